"""Telling the person of every change to their second factors (issue 17: every credential change),
by SMS to the verified phone and email to the verified email, after the change is committed; the
message names what changed, never a secret. A notice that cannot be sent is logged, not raised."""

from __future__ import annotations

from app.accounts.credentials import notice_recipients, site_name, tell

CHANGES = {
    "totp_added": "An authenticator app was set up for your account",
    "totp_removed": "The authenticator app was removed from your account",
    "passkey_added": "A passkey or security key was added to your account",
    "passkey_removed": "A passkey or security key was removed from your account",
    "sms_on": "Sign-ins to your account can now ask for a code by text message",
    "sms_off": "Sign-ins to your account no longer ask for a code by text message",
    "reset": "An administrator removed the two-step verification of your account",
}


def factor_changed(account_id: int, change: str) -> None:
    text = (f"{CHANGES[change]} at {site_name()}. If this was not you, sign in and check your "
            "security settings, or contact support.")
    tell(notice_recipients(account_id), "Your sign-in settings changed", text, "mfa_notice", account_id)
