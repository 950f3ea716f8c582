"""`python -m mock_provider --port 18080` (run from tests/): serve until Ctrl-C."""
import argparse
import signal
import sys
import threading

from .server import MockProvider


def main() -> int:
    ap = argparse.ArgumentParser(description="aispend mock LLM provider")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18080)
    args = ap.parse_args()
    mock = MockProvider(args.host, args.port).start()
    print(f"mock provider listening on {mock.url}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    mock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
