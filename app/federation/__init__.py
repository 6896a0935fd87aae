"""Upstream identity providers ("open platforms" such as WeChat or QQ, or any OpenID Connect
provider) and account linking."""
