"""The WTForms of the login, sign-up, consent, phone and password recovery pages (CSRF on every one)."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, Optional


class LoginForm(FlaskForm):
    login = StringField("Phone, email or username", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    submit = SubmitField("Log in")


class ContinueForm(FlaskForm):
    """Select account (prompt=select_account): continue as the logged-in user."""

    submit = SubmitField("Continue")


class ConsentForm(FlaskForm):
    approve = SubmitField("Allow")
    deny = SubmitField("Deny")


class LogoutForm(FlaskForm):
    submit = SubmitField("Log out")


class PhoneForm(FlaskForm):
    """Log in or sign up with a one-time code: the phone number."""

    phone = StringField("Phone number", validators=[DataRequired(), Length(max=32)])
    submit = SubmitField("Send code")


class CodeForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired(), Length(max=12)])
    submit = SubmitField("Continue")


class SignUpForm(FlaskForm):
    """After a verified code for a new number (also: start fresh on a recycled number)."""

    name = StringField("Your name (optional)", validators=[Optional(), Length(max=200)])
    password = PasswordField("Password (optional)", validators=[Optional(), Length(max=1024)])
    submit = SubmitField("Create account")


class PasswordProofForm(FlaskForm):
    """A dormant account: its password as well as the code."""

    password = PasswordField("Password of that account", validators=[DataRequired(), Length(max=1024)])
    submit = SubmitField("Log in")


class ForgotPasswordForm(FlaskForm):
    """Forgot password: the phone or email of the account (app.accounts.recovery)."""

    login = StringField("Phone number or email address", validators=[DataRequired(), Length(max=320)])
    submit = SubmitField("Continue")


class NewPasswordForm(FlaskForm):
    """A new password, typed twice (the rules are the service's: passwords.check_new_password)."""

    password = PasswordField("New password", validators=[DataRequired(), Length(max=1024)])
    confirm = PasswordField("New password again", validators=[
        DataRequired(), EqualTo("password", message="the two passwords are not the same")])
    submit = SubmitField("Set password")
