"""A real SMTP server for dealreg's tests: aiosmtpd on loopback, delivering into a Maildir.

Started by dealreg-notify-fake's SmtpServer as a child process. One script for every mode
because aiosmtpd's command line (`python3 -m aiosmtpd -c aiosmtpd.handlers.Mailbox DIR`)
cannot require AUTH; its Controller can.

Usage: smtp_server.py --port PORT --maildir DIR [--user USER] [--tls-cert PEM --tls-key PEM]
The password, when --user is given, is read from the environment variable
DEALREG_SMTP_PASSWORD so it never shows in a process listing.
"""

import argparse
import os
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--user")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()

    kwargs = {}
    if args.user is not None:
        user = args.user.encode()
        password = os.environ.get("DEALREG_SMTP_PASSWORD", "").encode()

        def authenticator(server, session, envelope, mechanism, auth_data):
            # Only this user with this password; anything else is refused (535).
            if (
                isinstance(auth_data, LoginPassword)
                and auth_data.login == user
                and auth_data.password == password
            ):
                return AuthResult(success=True)
            return AuthResult(success=False, handled=False)

        # No TLS on loopback: AUTH over plain text must be allowed for the test.
        kwargs = dict(
            authenticator=authenticator, auth_required=True, auth_require_tls=False
        )

    if args.tls_cert:
        # STARTTLS offered and required before MAIL, as a submission server would.
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        kwargs.update(tls_context=context, require_starttls=True)

    controller = Controller(
        Mailbox(args.maildir), hostname="127.0.0.1", port=args.port, **kwargs
    )
    controller.start()
    print("ready", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
