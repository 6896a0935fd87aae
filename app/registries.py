"""The hub's registries: where the account core and the worker *ask* for what the features provide
(decisions, not effects — effects are signals, app/signals.py). Each app has one ``Registries``
(``app.extensions["tessera_registries"]``), filled by the domains' ``init_app`` in ``create_app``
(app/factory.py); a kernel module, so every layer may read it and none names a feature.

- ``login_fallbacks``: asked by ``app.accounts.login.authenticate_password`` when the hub cannot
  check a password itself (an identifier it does not know, a migrated account without a password).
  The first fallback that ``wants`` the login ``migrate``\\ s it (lazy migration, app/bulk_import/lazy.py).
- ``business_data``: the tables whose rows are an account's business data (``account_id`` column);
  ``app.accounts.binding.has_business_data`` asks every one. An account with business data is
  merged, never silently closed by a phone bind.
- ``second_factors``: asked by the login pages (``app.accounts.routes``) whether an account has a
  second factor, so a login that passed its first one goes on to the second-factor step
  (app/mfa). Each is ``(name, enrolled(account_id) -> bool, remove(account_id, actor) -> int)``:
  ``remove`` is what an operator's reset of a person's second factors calls (``reset_second_factors``).
- ``second_factor_pages``: the endpoints of that second step (set by app/mfa), so the login pages
  never name a feature's page.
- ``second_factor_waivers``: asked by the same pages whether this browser may skip the second step
  (a remembered browser, app/mfa/trusted.py); only for a site that wants one factor.
- ``periodic_jobs``: what ``tessera worker`` runs each round before it delivers the outbox
  (app/worker.py), in registration order (Warehouse's ``add_periodic_task``).
- ``actor_descriptions``: asked by ``app.accounts.history`` for the words a person reads about who
  acted on their account (an audit event's ``actor``); the first one that knows the actor answers
  (the admin domain: its admins and admin clients are "an administrator").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from flask import Flask, current_app


class LoginFallback(Protocol):
    """A way to check a password the hub cannot check itself. ``wants(account, tenant_id)``: whether
    it should be asked (``account`` is the hub's account the identifier names, or None).
    ``migrate(login, password, tenant_id, account)``: (account, identity) when the password is right
    (the hub's own hash was just made, in the caller's transaction), None when it is not."""

    def wants(self, account, tenant_id: int | None) -> bool: ...

    def migrate(self, login: str, password: str, tenant_id: int | None, account): ...


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    run: Callable[[], object]


@dataclass(frozen=True)
class SecondFactor:
    name: str
    enrolled: Callable[[int], bool]
    #: Remove the account's factors of this kind (in the caller's transaction); how many went.
    remove: Callable[[int, str], int] | None = None


@dataclass
class Registries:
    login_fallbacks: list[LoginFallback] = field(default_factory=list)
    second_factors: list[SecondFactor] = field(default_factory=list)
    second_factor_waivers: list[Callable[[int, object], bool]] = field(default_factory=list)
    #: The endpoints of the second step: ``interaction`` (takes ``uid``) and ``account_login``.
    second_factor_pages: dict[str, str] = field(default_factory=dict)
    business_data: list[type] = field(default_factory=list)
    periodic_jobs: list[PeriodicJob] = field(default_factory=list)
    actor_descriptions: list[Callable[[str], str | None]] = field(default_factory=list)

    def add_login_fallback(self, fallback: LoginFallback) -> None:
        self.login_fallbacks.append(fallback)

    def add_business_data(self, *models: type) -> None:
        """Models with an ``account_id`` column whose rows are data a merge must keep."""
        self.business_data.extend(m for m in models if m not in self.business_data)

    def add_second_factor(self, name: str, enrolled: Callable[[int], bool],
                          remove: Callable[[int, str], int] | None = None) -> None:
        self.second_factors.append(SecondFactor(name, enrolled, remove))

    def has_second_factor(self, account_id: int) -> bool:
        """Whether the account has any second factor a login must then ask for."""
        return any(factor.enrolled(account_id) for factor in self.second_factors)

    def set_second_factor_pages(self, *, interaction: str, account_login: str) -> None:
        """Where the login pages send a login that passed its first factor (app/mfa serves them)."""
        self.second_factor_pages = {"interaction": interaction, "account_login": account_login}

    def add_second_factor_waiver(self, waives: Callable[[int, object], bool]) -> None:
        """``waives(account_id, tenant_policy)``: this browser may skip the second step for the
        account (a remembered browser, app/mfa/trusted.py)."""
        self.second_factor_waivers.append(waives)

    def second_factor_waived(self, account_id: int, policy=None) -> bool:
        return any(waives(account_id, policy) for waives in self.second_factor_waivers)

    def add_periodic_job(self, name: str, run: Callable[[], object]) -> None:
        """``run`` is called with an app context, once per worker round; it commits its own work
        and must return quickly when there is nothing to do (it is called every second or so)."""
        if any(job.name == name for job in self.periodic_jobs):
            raise ValueError(f"periodic job {name!r} registered twice")
        self.periodic_jobs.append(PeriodicJob(name, run))


    def add_actor_description(self, describe: Callable[[str], str | None]) -> None:
        """``describe(actor)``: the words a person reads for an audit event's actor ("by an
        administrator"), or None for an actor it does not know. It never names the actor."""
        self.actor_descriptions.append(describe)


def init_app(app: Flask) -> Registries:
    registries = app.extensions["tessera_registries"] = Registries()
    return registries


def registries(app: Flask | None = None) -> Registries:
    """The registries of ``app`` (by default the current app)."""
    return (app or current_app).extensions["tessera_registries"]
