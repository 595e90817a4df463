"""How often one client may ask for something anonymous (a sign-in challenge): a token bucket per client
address, in the running process, remembering a bounded number of addresses."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi import Request

from endcredits.service import auth
from endcredits.service.auth import AuthError


class ClientBudget:
    """``burst`` requests per client address at once, then one more every ``refill_s`` seconds. At most
    ``clients_max`` addresses are remembered; the least recently seen is forgotten first (it starts again
    with a full budget, which only ever favours that client). Safe to share between threads."""

    def __init__(
        self, *, burst: int, refill_s: float, clients_max: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if burst < 1 or refill_s <= 0 or clients_max < 1:
            raise ValueError("a client budget needs burst >= 1, refill_s > 0 and clients_max >= 1")
        self.burst = burst
        self.refill_s = refill_s
        self.clients_max = clients_max
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str) -> int:
        """Spend one request of ``client``'s budget: 0 when allowed, else the whole seconds to wait (and
        nothing is spent)."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) / self.refill_s)
            wait_s = 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) * self.refill_s))
            self._buckets[client] = (tokens - 1 if wait_s == 0 else tokens, now)
            while len(self._buckets) > self.clients_max:
                self._buckets.popitem(last=False)
        return wait_s


def client_address(request: Request) -> str:
    """The client's address as this server sees it: behind a proxy, the proxy's, unless the server is told
    to trust forwarded addresses (``endcredits serve --forwarded-allow-ips``)."""
    return request.client.host if request.client is not None else "unknown"


def spend_challenge(request: Request) -> None:
    """One sign-in challenge from this request's client, or 429 with the seconds to wait."""
    budget: ClientBudget = request.app.state.challenge_budget
    wait_s = budget.take(client_address(request))
    if wait_s:
        raise AuthError(
            429,
            "rate_limited",
            f"too many sign-in challenges from this address: try again in {wait_s} s",
            retry_after_s=wait_s,
        )


def challenge_budget() -> ClientBudget:
    """The budget of sign-in challenges per client address, from ``auth``'s bounds."""
    return ClientBudget(
        burst=auth.CHALLENGES_PER_CLIENT_BURST,
        refill_s=auth.CHALLENGE_CLIENT_REFILL_S,
        clients_max=auth.CLIENTS_REMEMBERED_MAX,
    )
