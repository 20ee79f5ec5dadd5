"""The API's access log (api.server.AccessLogger): the lines gunicorn's own logger writes, made for less."""

from __future__ import annotations

import datetime
import types

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from api.server import AccessLogger


def _line(logger_class: type[Logger], access_log_format: str | None, environ: dict, status: str, sent: int | None,
          headers: list[tuple[str, str]]) -> str:
    config = Config()
    if access_log_format is not None:
        config.set("access_log_format", access_log_format)
    logger = logger_class(config)
    response = types.SimpleNamespace(status=status, sent=sent, headers=headers)
    request = types.SimpleNamespace(headers=[("User-Agent", environ.get("HTTP_USER_AGENT", ""))])
    atoms = logger.atoms_wrapper_class(logger.atoms(response, request, environ,
                                                    datetime.timedelta(seconds=1, microseconds=2345)))
    return config.access_log_format % atoms


@pytest.mark.parametrize("access_log_format", [None, '%(h)s %(t)s "%(r)s" %(s)s %(B)s %(D)s %(L)s %(M)s %(T)s %(q)s '
                                                     '%(U)s %(m)s %(H)s %(p)s %(x)s',
                                               '%(h)s "%({user-agent}i)s" %({content-type}o)s %({raw_uri}e)s'])
@pytest.mark.parametrize(("status", "sent"), [("200 OK", 320), ("404 NOT FOUND", 0), (503, None)])
def test_the_lines_are_gunicorns_own(access_log_format, status, sent):
    environ = {"REMOTE_ADDR": "192.0.2.7", "REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1",
               "RAW_URI": "/api/v1/provisioning/pxe/boot?mac=52-54-00-00-00-01&product=A%20%22B%22",
               "PATH_INFO": "/api/v1/provisioning/pxe/boot", "QUERY_STRING": "mac=52-54-00-00-00-01",
               "HTTP_USER_AGENT": 'iPXE/1.21.1 "quoted"', "HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"}
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "320")]
    for _ in range(2):  # twice at most: the clock may turn to the next second between the two lines
        ours = _line(AccessLogger, access_log_format, environ, status, sent, headers)
        if ours == _line(Logger, access_log_format, environ, status, sent, headers):
            break
    assert ours == _line(Logger, access_log_format, environ, status, sent, headers)
    assert "192.0.2.7" in ours
