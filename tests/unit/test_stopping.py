"""A stop signal is honoured wherever it lands in the main thread's wait."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from helpers import write_config

from pyqrscp.cli.command import main
from pyqrscp.server.stopping import StopRequests

# Runs serve_until_signalled once for every N, with SIGINT sent to the process at the N-th
# bytecode executed inside it (a trace function counts them), so that the signal handler runs
# at each point of the wait in turn; prints "N exit-code" per run.
_EVERY_BYTECODE = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from pyqrscp.cli.command import parse_flags, resolve_options
    from pyqrscp.config import load_config
    from pyqrscp.server.server import ArchiveServer

    config = load_config(Path(sys.argv[1]))
    options = resolve_options(parse_flags(["-c", sys.argv[1], "0"]), config)
    for n in range(1, int(sys.argv[2])):
        server = ArchiveServer(config, options)
        executed = 0

        def tracer(frame, event, arg):
            global executed
            frame.f_trace_opcodes = True
            if event == "opcode":
                executed += 1
                if executed == n:
                    os.kill(os.getpid(), signal.SIGINT)
            return tracer

        with server.stop_signals():
            sys.settrace(tracer)
            code = server.serve_until_signalled(wake_every=0.01)
            sys.settrace(None)
        print(n, code, flush=True)
""")


def test_a_signal_at_any_bytecode_of_the_wait_stops_the_server(tmp_path: Path) -> None:
    # Before, the handler called threading.Event.set(), whose lock the main thread holds for
    # a few bytecodes of each Event.wait(): a signal landing there hung the process for good
    # (here at the 81st bytecode; in CI a SIGINT right after start-up, once in a few thousand).
    config = write_config(tmp_path, [f"A {tmp_path / 'store'} RW (9, 1024mb) ANY"])
    script = tmp_path / "every_bytecode.py"
    script.write_text(_EVERY_BYTECODE)
    runs = 200  # several turns of the wait loop
    try:
        result = subprocess.run([sys.executable, str(script), str(config), str(runs)],
                                capture_output=True, text=True, timeout=240)
        output = result.stdout
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"").decode() if isinstance(expired.stdout, bytes) else (
            expired.stdout or "")
    lines = output.split("\n")[:-1]
    stopped = len(lines)
    assert stopped == runs - 1, f"hung with the signal at bytecode {stopped + 1}"
    assert all(line.endswith(" 0") for line in lines)


def test_a_request_from_another_thread_ends_the_wait() -> None:
    stops = StopRequests()
    assert not stops.wait(timeout=0)
    threading.Thread(target=stops.request).start()
    assert stops.wait(timeout=60)
    assert stops.requested and stops.signum is None
    stops.close()
    stops.request()  # after close: nothing, no error


def test_main_puts_the_signal_handlers_back_when_it_returns(tmp_path: Path) -> None:
    """In-process main(): the handlers it found are there again after a start-up failure
    (the port taken) and after a stop by SIGINT, and its socket pair is closed (an unclosed
    one is a ResourceWarning, an error in this suite)."""
    config = write_config(tmp_path, [f"A {tmp_path / 'store'} RW (9, 1024mb) ANY"])
    found = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["-c", str(config), "--bind", "127.0.0.1", str(port)]) == 1
    assert {signum: signal.getsignal(signum) for signum in found} == found

    returned = threading.Event()
    sent = threading.Event()

    def interrupt_once_handled() -> None:
        """SIGINT once main() has its handlers in place (it stops the server whenever it
        lands, start-up included), never after main() returned."""
        while not returned.wait(0.01):
            if signal.getsignal(signal.SIGINT) is not found[signal.SIGINT]:
                os.kill(os.getpid(), signal.SIGINT)
                sent.set()
                return

    interrupter = threading.Thread(target=interrupt_once_handled, daemon=True)
    interrupter.start()
    try:
        assert main(["-c", str(config), "--bind", "127.0.0.1", "0"]) == 0
    finally:
        returned.set()
        interrupter.join(60)
    assert sent.is_set()
    assert {signum: signal.getsignal(signum) for signum in found} == found
    gc.collect()
