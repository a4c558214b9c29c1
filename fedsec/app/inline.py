"""An in-process Grid: the ServerApp loop drives the ClientApp in the same process.

``federation.backend: inline`` runs exactly the code of a Simulation-Engine run
(``fedsec.app.server.run_experiment`` with Flower's strategies, the ``ClientApp``
with its Mods, Message API records in both directions) but calls the clients
one after the other in the driver process instead of in Ray actors. There is
no Ray start-up (about 20 s), breakpoints work inside clients, and a client's
exception becomes an error reply exactly as in the Simulation Engine. Every
node keeps its own ``Context`` (``state`` persists across rounds).

What it does not model: parallelism, per-client resource limits, and a client
that ends its process (``faults.mode=exit``) ends the whole run.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Iterable

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from fedsec.config import Config

log = logging.getLogger("fedsec")

SERVER_NODE_ID = 0
CLIENT_ERROR_CODE = 1


class InlineGrid(Grid):
    """``num_nodes`` SuperNodes with partition ids 0..num_nodes-1, served in this process."""

    def __init__(self, client_app: ClientApp, num_nodes: int, run_id: int = 1) -> None:
        self._app = client_app
        self._run = Run.create_empty(run_id)
        self._contexts = {
            1000 + pid: Context(
                run_id=run_id,
                node_id=1000 + pid,
                node_config={"partition-id": pid, "num-partitions": num_nodes},
                state=RecordDict(),
                run_config={},
            )
            for pid in range(num_nodes)
        }

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("InlineGrid answers synchronously: use send_and_receive")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("InlineGrid answers synchronously: use send_and_receive")

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Deliver each message to its node's ClientApp; exceptions become error replies."""
        return [self._deliver(msg) for msg in messages]

    def _deliver(self, msg: Message) -> Message:
        msg.metadata.__dict__["_message_id"] = uuid.uuid4().hex
        context = self._contexts[msg.metadata.dst_node_id]
        try:
            return self._app(msg, context)
        except Exception as err:  # the Simulation Engine turns client exceptions into error replies too
            reason = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=5)}"
            return Message(Error(code=CLIENT_ERROR_CODE, reason=reason), reply_to=msg)


def run_inline(cfg: Config, resume: bool = False) -> None:
    """Run the experiment with every client in this process."""
    from fedsec.app.client_app import app as client_app
    from fedsec.app.server import run_experiment

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SERVER_NODE_ID
    run_experiment(InlineGrid(client_app, cfg.federation.num_clients), cfg, resume=resume)
