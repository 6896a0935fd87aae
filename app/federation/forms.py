"""The WTForms of the upstream-login pages: create an account, or link one by password or a code to its phone."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Length


class CreateAccountForm(FlaskForm):
    """First login with an upstream identity: make it a new account."""

    submit = SubmitField("Create a new account")


class LinkPasswordForm(FlaskForm):
    """First login with an upstream identity: link it to an existing account, proved by its password."""

    login = StringField("Phone, email or username", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    submit = SubmitField("Link and log in")


class LinkPhoneForm(FlaskForm):
    """Link by a one-time code sent to the existing account's phone."""

    phone = StringField("Phone number of your account", validators=[DataRequired(), Length(max=32)])
    submit = SubmitField("Send a code")


class LinkCodeForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired(), Length(min=6, max=6)])
    submit = SubmitField("Link and log in")
