"""How `rlhf-studio up` serves: a keep-alive above the proxies' in front of it."""

from typer.testing import CliRunner

from app.cli import root
from app.config import get_settings


def test_up_keeps_connections_alive_longer_than_a_proxy_does(engine, monkeypatch):
    import uvicorn

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    out = CliRunner().invoke(root, ["up", "--no-workers"])
    assert out.exit_code == 0, out.output
    assert seen["timeout_keep_alive"] == get_settings().keep_alive_s
    assert get_settings().keep_alive_s > 60  # nginx's and the cloud load balancers' idle
