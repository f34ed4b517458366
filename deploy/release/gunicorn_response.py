"""The release's gunicorn responses: gunicorn's, with two per-response costs taken off.

- A response goes out with its body's first bytes in the same send as its status line and
  headers: gunicorn sends the headers, then the body, two write(2) calls and two trips
  through the TCP stack for every page. A Django HttpResponse's body is one piece, so the
  whole response is one send.
- The Date header is formatted once a second: gunicorn formats it with
  email.utils.formatdate for every response, as long as writing the access-log line takes.

The bytes on the wire are gunicorn's (tests/test_gunicorn_response.py compares them with
gunicorn's own Response). install() puts both in place of gunicorn's, in each worker
(gunicorn.conf.py's post_fork). Chunked bodies, bodies gunicorn drops (HEAD, 1xx, 204, 304),
first pieces over COMBINED_BYTES or past Content-Length, and files sent with sendfile take
gunicorn's own path. Written against gunicorn 27.0.1 (requirements/base.txt pins it): Response
below reads its private _omits_body, so an upgrade re-runs those tests.
"""

import time

from gunicorn import util
from gunicorn.http import wsgi

gunicorn_http_date = util.http_date
gunicorn_response = wsgi.Response

# A larger first piece goes out after the headers, as gunicorn sends it: copying it to save
# one write(2) would cost more than the write.
COMBINED_BYTES = 64 * 1024

# (second, its Date header text): one tuple, so that a thread reads both or neither
_date = None, None


def http_date(timestamp=None):
    """gunicorn's util.http_date, formatted once a second for the current time."""
    if timestamp is not None:
        return gunicorn_http_date(timestamp)
    global _date
    second = int(time.time())
    dated, text = _date
    if second != dated:
        text = gunicorn_http_date(second)
        _date = second, text
    return text


class Response(gunicorn_response):
    def header_block(self):
        """The status line and headers, as gunicorn's send_headers writes them."""
        lines = self.default_headers()
        lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        return f"{''.join(lines)}\r\n".encode("latin-1")

    def send_headers(self):
        if self.headers_sent:
            return
        util.write(self.sock, self.header_block())
        self.headers_sent = True

    def write(self, arg):
        if not self.goes_with_headers(arg):
            return super().write(arg)
        block = self.header_block()
        # counted before the send, as gunicorn's write() counts them: a send that fails
        # leaves the response as started, so no error page follows it on the connection
        self.headers_sent = True
        self.sent += len(arg)
        self.sock.sendall(block + arg)

    def goes_with_headers(self, arg):
        """Whether arg is the body's first bytes, to be sent as they are with the headers:
        not chunked, nothing to drop (HEAD, 1xx, 204, 304), within Content-Length and
        COMBINED_BYTES."""
        return bool(
            not self.headers_sent
            and not self.chunked
            and not self._omits_body
            and isinstance(arg, bytes)
            and 0 < len(arg) <= COMBINED_BYTES
            and (self.response_length is None or len(arg) <= self.response_length)
        )


def install():
    """gunicorn's workers build each response from wsgi.Response, and date it with
    util.http_date: both looked up at each call."""
    util.http_date = http_date
    wsgi.Response = Response
