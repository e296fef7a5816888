"""A recording SMTP sink on Python's aiosmtpd (Debian's python3-aiosmtpd), for the interop test
test/interop/delivery.test.ts; started by test/support/aiosmtpd.ts with /usr/bin/python3.

Proves nothing by itself: it listens on 127.0.0.1 port 0 (prints "PORT <n>" on stdout once bound),
offers 8BITMIME and SMTPUTF8 (decode_data=False, enable_SMTPUTF8=True), and for each message writes
OUT/<n>.json (the envelope: mail_from, rcpt_tos, mail_options, rcpt_options, smtp_utf8) and then
OUT/<n>.eml: envelope.original_content, the DATA bytes exactly as aiosmtpd un-stuffed them, CRLF
line ends and all. Each file is written to a temp name and renamed, so a file that exists is whole.
It exits on SIGTERM, SIGINT, or when its stdin closes (the test process went away).

Usage: /usr/bin/python3 aiosmtpd-sink.py OUT_DIR
"""
import asyncio
import json
import os
import signal
import sys
import threading

from aiosmtpd.smtp import SMTP


class RecordingHandler:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0

    def _write(self, name, data):
        tmp = os.path.join(self.out_dir, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(self.out_dir, name))

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        name = "%06d" % self.count
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "mail_options": envelope.mail_options,
            "rcpt_options": envelope.rcpt_options,
            "smtp_utf8": envelope.smtp_utf8,
        }
        self._write(name + ".json", json.dumps(meta, ensure_ascii=False).encode("utf-8"))
        self._write(name + ".eml", bytes(envelope.original_content))
        return "250 2.0.0 Ok: stored as " + name


async def main(out_dir):
    loop = asyncio.get_running_loop()
    handler = RecordingHandler(out_dir)
    server = await loop.create_server(
        lambda: SMTP(handler, decode_data=False, enable_SMTPUTF8=True, hostname="aiosmtpd-peer.test"),
        host="127.0.0.1",
        port=0,
    )
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)

    def watch_stdin():
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    await done.wait()
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
