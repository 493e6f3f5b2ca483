"""``lse dashboard``: a live, read-only web view of running experiments.

* :mod:`lse.dashboard.reader` -- one population, read incrementally and never written.
* :mod:`lse.dashboard.panels` -- PURE: what each panel shows (Pareto front, species, ...).
* :mod:`lse.dashboard.server` -- the HTTP server (standard library) and its safety rules.
* ``static/`` -- the page: plain JavaScript drawing SVG and canvas, shipped in the package.
* :mod:`lse.dashboard.bench` -- ``python -m lse.dashboard.bench``: load and update costs.
"""

from __future__ import annotations

from pathlib import Path


def register_cli(app) -> None:
    import os

    import typer

    @app.command("dashboard")
    def dashboard_cmd(
        pop: list[Path] = typer.Option(..., "--pop", help="population directory; repeat to show several side by side"),
        label: list[str] = typer.Option(None, "--label", help="one name per --pop (default: the folder's name)"),
        host: str = typer.Option("127.0.0.1", "--host", help="address to bind; anything but loopback needs --allow-remote"),
        port: int = typer.Option(8080, "--port", help="TCP port (0: any free port)"),
        allow_remote: bool = typer.Option(False, "--allow-remote",
                                          help="allow a non-loopback --host; every request must then carry the token"),
        token: str = typer.Option(None, "--token", envvar="LSE_DASHBOARD_TOKEN",
                                  help="token for --allow-remote (default: a random one, printed in the URL)"),
        interval: float = typer.Option(1.0, "--interval", min=0.2, help="seconds between reads of the population"),
    ) -> None:
        """A live web view of the population(s): progress curves, Figure 1, workers, lineage. Read-only."""
        from lse.dashboard.server import serve
        from lse.errors import LseError

        try:
            server = serve(pop, label or None, host, port, allow_remote=allow_remote, token=token, interval=interval)
        except (LseError, OSError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"lse dashboard: {server.url}  (read-only; Ctrl-C stops it)")
        if not allow_remote:
            typer.echo(f"from another machine: ssh -N -L {server.httpd.server_address[1]}:127.0.0.1:"
                       f"{server.httpd.server_address[1]} {os.environ.get('USER', 'you')}@THIS-HOST, then open the URL there")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.httpd.server_close()
