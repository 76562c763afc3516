"""Control API (JSON in, JSON out): the simulation's truth, fault injection and the clock.

    GET    /state                 truth right now (hashrate, miners, heights, peers, blocks, faults...)
    GET    /faults                {"active": [...], "available": {name: description}}
    POST   /faults/<name>         switch a fault on; body = parameters (+ optional durationSeconds)
    DELETE /faults/<name>         switch it off (404 if it was not active)
    DELETE /faults                switch every fault off
    POST   /faults/orphan_block   action: orphan the newest pending block now (409 if none)
    POST   /blocks/find           the pool finds the next network block (unless a fault prevents it)
    POST   /time/warp {"seconds": N}    jump sim time forward (processed before answering)
    POST   /clock/pause | /clock/resume
    POST   /clock/step {"seconds": N}   advance the (paused) clock by hand
"""

from __future__ import annotations

import json

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from poolsim.faults import ACTIONS, FAULTS, FaultError

MAX_WARP = 30 * 86400


def reply(obj, status: int = 200) -> Response:
    return Response(json.dumps(obj, indent=2, default=str), status=status, content_type="application/json")


class ControlApi:
    def __init__(self, poolsim):
        self.ps = poolsim
        self.url_map = Map([
            Rule("/state", endpoint="state", methods=["GET"]),
            Rule("/faults", endpoint="faults", methods=["GET"]),
            Rule("/faults", endpoint="clear_faults", methods=["DELETE"]),
            Rule("/faults/<name>", endpoint="activate", methods=["POST"]),
            Rule("/faults/<name>", endpoint="deactivate", methods=["DELETE"]),
            Rule("/blocks/find", endpoint="find_block", methods=["POST"]),
            Rule("/time/warp", endpoint="warp", methods=["POST"]),
            Rule("/clock/pause", endpoint="pause", methods=["POST"]),
            Rule("/clock/resume", endpoint="resume", methods=["POST"]),
            Rule("/clock/step", endpoint="step", methods=["POST"]),
        ], strict_slashes=False)

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            endpoint, args = self.url_map.bind_to_environ(environ).match()
            response = getattr(self, endpoint)(request, **args)
        except NotFound:
            response = reply({"error": "not found"}, 404)
        except MethodNotAllowed:
            response = reply({"error": "method not allowed"}, 405)
        except FaultError as exc:
            response = reply({"error": str(exc)}, exc.status)
        except ValueError as exc:
            response = reply({"error": str(exc)}, 400)
        return response(environ, start_response)

    @staticmethod
    def body(request: Request) -> dict:
        if not request.get_data():
            return {}
        try:
            data = json.loads(request.get_data(as_text=True))
        except json.JSONDecodeError as exc:
            raise ValueError(f"body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        return data

    def _seconds(self, request: Request) -> float:
        try:
            seconds = float(self.body(request).get("seconds", 0))
        except (TypeError, ValueError) as exc:
            raise ValueError("seconds must be a number") from exc
        if not 0 <= seconds <= MAX_WARP:
            raise ValueError(f"seconds must be between 0 and {MAX_WARP}")
        return seconds

    # ---------------------------------------------------------------- endpoints
    def state(self, request: Request) -> Response:
        return reply(self.ps.state())

    def faults(self, request: Request) -> Response:
        available = {name: desc for name, (desc, _) in FAULTS.items()} | ACTIONS
        return reply({"active": self.ps.faults.snapshot(), "available": available})

    def activate(self, request: Request, name: str) -> Response:
        if name == "orphan_block":
            block = self.ps.orphan_newest_pending()
            if block is None:
                return reply({"error": "no pending block to orphan"}, 409)
            return reply({"orphaned": {"blockHeight": block.height, "created": block.created}})
        fault = self.ps.faults.activate(name, self.body(request), self.ps.sim.t)
        self.ps.apply_faults()
        return reply({"active": fault.to_json()}, 201)

    def deactivate(self, request: Request, name: str) -> Response:
        if name not in FAULTS:
            raise FaultError(f"unknown fault {name!r}", status=404)
        if not self.ps.faults.clear(name):
            return reply({"error": f"fault {name!r} is not active"}, 404)
        self.ps.apply_faults()
        return reply({"cleared": name})

    def clear_faults(self, request: Request) -> Response:
        names = self.ps.faults.clear_all()
        self.ps.apply_faults()
        return reply({"cleared": names})

    def find_block(self, request: Request) -> Response:
        self.ps.find_block()
        return reply({"forced": True}, 202)

    def warp(self, request: Request) -> Response:
        steps = self.ps.warp(self._seconds(request))
        return reply({"steps": steps, "simTime": self.ps.sim.t})

    def pause(self, request: Request) -> Response:
        self.ps.clock.pause()
        return reply({"paused": True, "simTime": self.ps.sim.t})

    def resume(self, request: Request) -> Response:
        self.ps.clock.resume()
        return reply({"paused": False, "simTime": self.ps.sim.t})

    def step(self, request: Request) -> Response:
        steps = self.ps.step(self._seconds(request))
        return reply({"steps": steps, "simTime": self.ps.sim.t})
