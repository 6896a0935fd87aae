from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Length


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
