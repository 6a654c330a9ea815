"""A tracking server behind MLflow's basic-auth app: our commands authenticate with
``MLFLOW_TRACKING_USERNAME``/``PASSWORD``, and without them say so in one line."""

from __future__ import annotations

import pytest

from tests.conftest import detect, mlflow_server
from tests.leaderboard_fixtures import populate

pytestmark = pytest.mark.slow
PASSWORD = "correct-horse-battery-staple"
CREDENTIALS = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": PASSWORD}


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """``mlflow server --app-name basic-auth`` with an admin user; yields (url, its folder)."""
    folder = tmp_path_factory.mktemp("auth")
    config = folder / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{folder / 'basic_auth.db'}\n"
        "admin_username = admin\n"
        f"admin_password = {PASSWORD}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 60\n"  # as make cluster-up: one slow hash per minute
    )
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only"}
    with mlflow_server(folder, "--app-name", "basic-auth", env=env) as url:
        yield url, folder


def test_leaderboard_behind_basic_auth_matches_the_database(auth_server, tmp_path, monkeypatch):
    """Both readers on one store: the API reader through the authenticated server (its bulk
    history calls included) and the SQL reader on the server's database give the same file."""
    url, folder = auth_server
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    populate(url)
    via_server, via_database = tmp_path / "server.csv", tmp_path / "database.csv"
    served = detect(
        ["leaderboard", "--tracking-uri", url, "--out", str(via_server)], tmp_path, CREDENTIALS
    )
    assert served.returncode == 0, served.stderr[-2000:]
    database = f"sqlite:///{folder / 'mlflow.db'}"
    direct = detect(
        ["leaderboard", "--tracking-uri", database, "--out", str(via_database)], tmp_path
    )
    assert direct.returncode == 0, direct.stderr[-2000:]
    assert via_server.read_text() == via_database.read_text()
    assert len(via_server.read_text().splitlines()) == 4  # header and the three finished runs

    refused = detect(
        ["leaderboard", "--tracking-uri", url, "--out", str(tmp_path / "x.csv")], tmp_path
    )
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "MLFLOW_TRACKING_USERNAME" in lines[0], lines
    assert not (tmp_path / "x.csv").exists()
