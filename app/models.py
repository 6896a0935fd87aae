"""Imports every domain's models so Alembic and the test suite see the whole schema."""

from app.accounts.models import Account, AuditEvent, Identity, OtpChallenge  # noqa: F401
from app.oidc.models import (  # noqa: F401
    AuthorizationCode, Client, Consent, Interaction, LoginChain, SessionClient, SigningKey, SSOSession,
    SubjectMapping, Token, UsedAssertion,
)
from app.federation.models import PendingUpstreamLogin, UpstreamProvider  # noqa: F401
from app.merging.models import MergeLock, MergeRecord  # noqa: F401
from app.bulk_import.models import AccountAttributes, ImportConflict, ImportJob, LegacyMapping, SyncConflict  # noqa: F401
from app.events.models import DeliveryAttempt, OutboxEvent  # noqa: F401
from app.tenants.models import Tenant  # noqa: F401
from app.partners.models import AccountAddress, ClaimChange, ClaimProvenance, DataContract  # noqa: F401
from app.caches import CacheVersion  # noqa: F401
from app.admin.models import AdminRole  # noqa: F401
from app.mfa.models import (  # noqa: F401
    RecoveryCode, SmsSecondFactor, TotpFactor, TrustedBrowser, WebAuthnChallenge, WebAuthnCredential,
)
