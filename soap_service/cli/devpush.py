"""``msgcenter devpush``: the development push sink (a local APNs and FCM stand-in)."""

from __future__ import annotations

import argparse

from soap_service.cli import output
from soap_service.cli.context import CliContext

DEFAULT_APNS_PORT = 2197  # APNs' own alternative port
DEFAULT_FCM_PORT = 8087


def cmd_devpush(args: argparse.Namespace, ctx: CliContext) -> int:
    from soap_service.devpush import serve_forever, start_devpush

    sink = start_devpush(args.host, args.apns_port, args.fcm_port, args.dir,
                         apns_key=args.apns_key, fcm_key=args.fcm_service_account)
    try:
        creds = sink.write_credentials()
    except BaseException:
        sink.stop()
        raise
    output.info(
        f"devpush: APNs on {sink.apns_url} (HTTP/2, trust {sink.tls.ca}), FCM on "
        f"{sink.fcm_url} (token_uri {sink.fcm_url}/token); storing notifications in "
        f"{args.dir}/\n"
        f"devpush: throwaway credentials: key_file = {creds.apns_key}, "
        f"service_account_file = {creds.fcm_service_account}")
    serve_forever(sink)
    return 0


def _port(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (0-65535), got {raw!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("devpush", help="run a development APNs/FCM sink that stores .json files")
    d.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    d.add_argument("--apns-port", type=_port, default=DEFAULT_APNS_PORT,
                   help=f"APNs port, HTTP/2 over TLS ({DEFAULT_APNS_PORT})")
    d.add_argument("--fcm-port", type=_port, default=DEFAULT_FCM_PORT,
                   help=f"FCM and OAuth token port, plain HTTP ({DEFAULT_FCM_PORT})")
    d.add_argument("--dir", default="var/push",
                   help="where to store notifications, certificates and credentials (var/push)")
    d.add_argument("--apns-key", default=None, metavar="FILE",
                   help="verify provider-token signatures with this .p8 / PEM key "
                        "(default: check their shape only)")
    d.add_argument("--fcm-service-account", default=None, metavar="FILE",
                   help="verify OAuth assertions with this service account's key "
                        "(default: check their shape only)")
    d.set_defaults(func=cmd_devpush)
