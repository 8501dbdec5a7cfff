#!/usr/bin/env python3
"""Runs a real Prefect 3 server for the tests: SQLite in a temp dir, loopback, the given port.

Usage: serve.py PORT DATA_DIR
Exits by itself when the process that started it goes away, so a test binary that ends (or
crashes) never leaves a server behind.
"""
import os
import sys
import threading
import time


def exit_with_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.5)


def main() -> None:
    port, data = int(sys.argv[1]), sys.argv[2]
    os.environ.update({
        "PREFECT_HOME": data,
        # SQLite in the data dir unless the test support gives a PostgreSQL URL.
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": os.environ.get(
            "AGENT_TEST_DATABASE_URL", f"sqlite+aiosqlite:///{data}/prefect.db"
        ),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        # The agent is the only worker; Prefect's own services stay quiet except what runs need
        # (each loop costs CPU even on an idle server, and a test run has many servers). Kept:
        # the event persister and stream, cancellation clean-up, the cleanup reconciler.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_REPOSSESSOR_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    })
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()

    import uvicorn
    from prefect.server.api.server import create_app

    uvicorn.run(create_app(ephemeral=False), host="127.0.0.1", port=port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
