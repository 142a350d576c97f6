"""A real IMAP server for tests: Debian's dovecot run from a temporary directory.

Started in the foreground (``dovecot -F``) with its own configuration, a self-signed
certificate for 127.0.0.1, one user (``bounces`` / ``pw``) and Maildir storage; stopped
by its process id.  As root the mail files belong to ``nobody``; as another user
everything runs as that user.  ``.ci/run`` installs ``dovecot-imapd``; elsewhere the tests
are skipped when it is missing (unless ``MC_REQUIRE_DOVECOT=1``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "pw"


@dataclass
class Imap:
    host: str
    port: int
    cert_pem: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert_pem))


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(root: Path, port: int, cert: Path, key: Path) -> str:
    if os.geteuid() == 0:
        mail_user, mail_group = "nobody", "nogroup"
        users = ""
    else:
        me = pwd.getpwuid(os.geteuid()).pw_name
        mail_user = mail_group = me
        users = f"default_internal_user = {me}\ndefault_login_user = {me}\n"
    return f"""{users}base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
auth_mechanisms = plain
disable_plaintext_auth = yes
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


@contextmanager
def dovecot() -> Iterator[Imap]:
    if not Path(DOVECOT).exists():
        if os.environ.get("MC_REQUIRE_DOVECOT") == "1":
            pytest.fail("dovecot is required (apt-get install dovecot-imapd)")
        pytest.skip("dovecot not installed (apt-get install dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="mc-dovecot-", dir="/tmp"))
    root.chmod(0o755)  # the login processes run as another user
    proc = None
    try:
        for name in ("run", "state", "mail"):
            (root / name).mkdir()
        if os.geteuid() == 0:
            shutil.chown(root / "mail", "nobody", "nogroup")
        (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        cert, key = _self_signed(root)
        port = _free_port()
        (root / "dovecot.conf").write_text(_config(root, port, cert, key))
        proc = subprocess.Popen([DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() \
                        else ""
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"dovecot did not start: {err} {log}"[-2000:])
                time.sleep(0.05)
        yield Imap("127.0.0.1", port, cert)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if proc.stderr:
                proc.stderr.close()
        shutil.rmtree(root, ignore_errors=True)
