"""The local stack: the whole pipeline on this machine, with real servers only.

    with LocalStack(profile="small") as stack:
        stack.authorize()                                   # the first OAuth consent, through the auth function
                                                            # (as the operator: with this stack's admin key)
        stack.publish("bling-schedule", {"month": "2026-01"})
        stack.wait_for_quiet(quiet_s=8, timeout_s=300)

One module per component (each usable on its own, e.g. by the test fixtures):
  base.py       REPO_ROOT, STACK_DIR, run directories, MissingDependency, the one-child-process component
  postgres.py   PostgresCluster: a throwaway initdb/pg_ctl cluster on a free port, migrated with
                `python -m shared.migrate`
  emulators.py  JavaEmulator, the base of Google's two emulators, and its subclasses PubSubEmulator (the launcher
                script execs java, so our PID is the JVM) and FirestoreEmulator (`java -cp ... CloudFirestore start`:
                the gcloud wrapper orphans it)
  sandbox.py    Sandbox: the fake Bling API v3 (local.sandbox), as a subprocess or in-process
  functions.py  FunctionServer: one `functions-framework` process per function in shared.topology.ALL_FUNCTIONS
  pubsub.py     create_topology() (topics, push subscriptions, dead-letter topics and hold subscriptions exactly as
                shared.topology declares them), publish_json(), pull_all()
  auth.py       the operator's consent through the auth function, and its /status
  logs.py       reading the processes' log files
  stack.py      LocalStack, composing them
Child processes are local.processes.ManagedProcess.

Every process is stopped by its PID on exit, on exceptions, on Ctrl-C and on SIGTERM; ports are picked free at
start. Run directories live in .stack/<run>/ (logs/<name>.log for every process, pgdata/ for the cluster).
"""
from local.stack.auth import auth_status, authorize_through_auth_function
from local.stack.base import (
    DEFAULT_ACCOUNT,
    DEFAULT_PROJECT,
    HOST,
    REPO_ROOT,
    STACK_DIR,
    MissingDependency,
    new_run_dir,
)
from local.stack.emulators import (
    FIRESTORE_JAR,
    GCLOUD_SDK_ROOT,
    PUBSUB_EMULATOR,
    FirestoreEmulator,
    JavaEmulator,
    PubSubEmulator,
    check_firestore_emulator,
    check_pubsub_emulator,
    emulator_env,
    java_bin,
)
from local.stack.functions import FunctionServer, venv_bin
from local.stack.postgres import PostgresCluster, postgres_bin_dir
from local.stack.pubsub import create_topology, publish_json, pull_all
from local.stack.sandbox import Sandbox, load_dataset
from local.stack.stack import LocalStack

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_PROJECT",
    "FIRESTORE_JAR",
    "GCLOUD_SDK_ROOT",
    "HOST",
    "PUBSUB_EMULATOR",
    "REPO_ROOT",
    "STACK_DIR",
    "FirestoreEmulator",
    "FunctionServer",
    "JavaEmulator",
    "LocalStack",
    "MissingDependency",
    "PostgresCluster",
    "PubSubEmulator",
    "Sandbox",
    "auth_status",
    "authorize_through_auth_function",
    "check_firestore_emulator",
    "check_pubsub_emulator",
    "create_topology",
    "emulator_env",
    "java_bin",
    "load_dataset",
    "new_run_dir",
    "postgres_bin_dir",
    "publish_json",
    "pull_all",
    "venv_bin",
]
