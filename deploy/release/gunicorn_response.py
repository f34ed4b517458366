"""The release's HTTP/1 responses: gunicorn's, with two per-response costs taken off.

- A response whose body comes as one piece (Django's HttpResponse does) goes out in one
  send: gunicorn sends its status line and headers, then its body, two write(2) calls and
  two trips through the TCP stack for every response.
- The Date header is formatted once a second: gunicorn formats it with
  email.utils.formatdate for every response, as long as writing the access-log line takes.

The bytes on the wire are gunicorn's (tests/test_gunicorn_response.py compares them with gunicorn's
own Response). install() puts both in place of gunicorn's before the workers fork; every
other case (chunked, streamed, a file, HEAD, 204, 304) takes gunicorn's own path.
"""

import time

from gunicorn import util
from gunicorn.http import wsgi

gunicorn_http_date = util.http_date
gunicorn_response = wsgi.Response

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
        # the headers and the body in one send; what gunicorn's write() would count
        self.sock.sendall(self.header_block() + arg)
        self.headers_sent = True
        self.sent += len(arg)

    def goes_with_headers(self, arg):
        """Whether arg is the body's first bytes, to be sent as they are: not chunked,
        nothing to drop (HEAD, 204, 304) and no more than Content-Length allows."""
        return (
            not self.headers_sent
            and not self.chunked
            and not self._omits_body
            and isinstance(arg, bytes)
            and arg
            and (self.response_length is None or len(arg) <= self.response_length)
        )


def install():
    """gunicorn's HTTP/1 worker builds each response from wsgi.Response, and its headers
    date them with util.http_date: both looked up at each call."""
    util.http_date = http_date
    wsgi.Response = Response
