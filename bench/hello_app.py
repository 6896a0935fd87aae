"""The framework's ceiling: a bare Flask route served by the same gunicorn settings as the hub."""

from flask import Flask

app = Flask(__name__)


@app.get("/hello")
def hello():
    return "hello"
