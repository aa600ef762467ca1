"""``hires serve``: its options, the checks made before anything listens, and the server's start
(uvicorn on a socket bound here, so that ``--port 0`` prints the port the system gave)."""
from __future__ import annotations

import argparse
import socket

DEFAULT_DATA_DIR = "hires-studio"


def add_parser(sub, parser_class) -> None:
    s = sub.add_parser("serve", help="the studio: a page for quick looks and print renders, and its JSON API "
                                     "(pip install 'hires[serve]')")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine "
                                                       "only; any other needs --token)")
    s.add_argument("--port", default="8000", metavar="N", help="port (default: 8000; 0: any free one)")
    s.add_argument("--token", metavar="SECRET", help="a secret every request must carry (the printed address "
                                                    "carries it); required off this machine")
    s.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="another name the page may be opened at (a proxy's, this machine's network name); "
                        "by default only the bound address, localhost, 127.0.0.1 and [::1]")
    s.add_argument("--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
                   help=f"the folder of uploads and renders, made by hires (default: ./{DEFAULT_DATA_DIR})")
    s.add_argument("--memory", default="2GiB", metavar="SIZE",
                   help="memory budget of the whole server, its renders and previews (default: 2GiB)")
    s.add_argument("--max-upload", default="50MB", metavar="SIZE", help="largest request body (default: 50MB)")
    s.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)


def run(args) -> int:
    from hires.core.config import parse_memory
    from hires.core.errors import OptionError
    import importlib.util
    if not all(importlib.util.find_spec(m) for m in ("starlette", "uvicorn", "multipart")):
        raise OptionError("serve: the studio needs its extra: pip install 'hires[serve]'")
    import uvicorn
    from hires.studio.serve import build_app, check_bind
    from hires.studio.servelimits import Limits
    from hires.studio.studio import Studio
    check_bind(args.host, args.token)
    if not args.port.isdigit() or not 0 <= int(args.port) <= 65535:
        raise OptionError(f"--port: {args.port!r} is not a port number (0-65535)")
    try:
        upload = parse_memory(args.max_upload)
    except OptionError:
        raise OptionError(f"--max-upload: {args.max_upload!r} is not a size; write e.g. 50MB") from None
    limits = Limits(parse_memory(args.memory), upload)
    studio = Studio.open(args.data_dir)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, int(args.port)))
    except OSError as e:
        raise OptionError(f"--host/--port: cannot listen on {args.host}:{args.port} ({e.strerror or e})") from None
    sock.listen(128)   # connections wait in the backlog from now on, before uvicorn takes the socket
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"hires studio at http://{host}:{port}/" + (f"?token={args.token}" if args.token else ""), flush=True)
    app = build_app(studio, limits, token=args.token, host=args.host, allow_hosts=tuple(args.allow_host))
    config = uvicorn.Config(app, log_level="debug" if args.debug else "warning", lifespan="on",
                            timeout_graceful_shutdown=1)  # (event streams end when CLOSING is set)
    _server_class()(config).run(sockets=[sock])
    return 0


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server that tells the event streams it is stopping (they would otherwise be
        cancelled at the graceful shutdown's timeout, each with a traceback in the log)."""
        def handle_exit(self, sig, frame) -> None:
            from hires.studio.serve import CLOSING
            CLOSING.set()
            super().handle_exit(sig, frame)
    return Server


