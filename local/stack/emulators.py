"""Google's Java emulators for Pub/Sub and Firestore: one base (a JVM on a free port of 127.0.0.1, ready when it
answers HTTP, its clients built with the emulator variable set) and one small subclass each."""
from __future__ import annotations

import abc
import contextlib
import os
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self

from local.processes import ManagedProcess, free_port, http_ok, wait_until
from local.stack.base import DEFAULT_PROJECT, HOST, ChildProcessComponent, MissingDependency

if TYPE_CHECKING:
    from google.cloud import firestore
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

GCLOUD_SDK_ROOT = Path(os.environ.get("GCLOUD_SDK_ROOT", "/usr/lib/google-cloud-sdk"))
PUBSUB_EMULATOR = GCLOUD_SDK_ROOT / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
FIRESTORE_JAR = GCLOUD_SDK_ROOT / "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"


def java_bin() -> str:
    found = shutil.which("java")
    if not found:
        raise MissingDependency("java not found (needed by the Pub/Sub and Firestore emulators): "
                                "apt-get install -y openjdk-17-jre-headless")
    return found


def _installed(path: Path, what: str, component: str, apt_package: str) -> Path:
    """path, once java and the emulator's file are there; else MissingDependency saying how to install it."""
    java_bin()
    if not path.exists():
        raise MissingDependency(f"{what} not found at {path}: `gcloud components install {component}` (or Google's "
                                f"apt package {apt_package})")
    return path


def check_pubsub_emulator() -> Path:
    return _installed(PUBSUB_EMULATOR, "Pub/Sub emulator", "pubsub-emulator", "google-cloud-cli-pubsub-emulator")


def check_firestore_emulator() -> Path:
    return _installed(FIRESTORE_JAR, "Firestore emulator", "cloud-firestore-emulator",
                      "google-cloud-cli-firestore-emulator")


_env_lock = threading.Lock()


@contextlib.contextmanager
def emulator_env(**values: str) -> Iterator[None]:
    """Set emulator variables only while a client is constructed (the clients read them at construction)."""
    with _env_lock:
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, old in saved.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old


class JavaEmulator(ChildProcessComponent):
    """One of Google's emulators: a JVM serving project `project` on HOST:port, logging to log_path."""

    name: ClassVar[str]  # the process name (and log name) in the stack
    title: ClassVar[str]  # for messages: "Pub/Sub emulator"
    host_variable: ClassVar[str]  # what Google's client libraries read to talk to the emulator

    def __init__(self, log_path: Path, project: str = DEFAULT_PROJECT, port: int | None = None) -> None:
        self.project = project
        self.port = port or free_port()
        self.log_path = Path(log_path)
        self.process: ManagedProcess | None = None

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    @abc.abstractmethod
    def argv(self) -> list[str]:
        """The command line that starts this emulator in the foreground."""

    def launch(self) -> Self:
        self.process = ManagedProcess(self.name, self.argv(), self.log_path, env={**os.environ}).start()
        return self

    def wait_ready(self, timeout_s: float = 60) -> None:
        wait_until(lambda: http_ok(f"http://{self.host}/"), timeout_s, f"{self.title} on {self.host}",
                   alive=self._exit_problem)

    def env(self) -> dict[str, str]:
        return {self.host_variable: self.host}

    def client_env(self) -> contextlib.AbstractContextManager[None]:
        """While a client of this emulator is constructed: the variable that points it here."""
        return emulator_env(**self.env())


class PubSubEmulator(JavaEmulator):
    """Google's Pub/Sub emulator (the launcher script execs java, so our PID is the JVM)."""

    name = "pubsub-emulator"
    title = "Pub/Sub emulator"
    host_variable = "PUBSUB_EMULATOR_HOST"

    def argv(self) -> list[str]:
        return [str(check_pubsub_emulator()), f"--host={HOST}", f"--port={self.port}"]

    def publisher(self) -> PublisherClient:
        with self.client_env():
            from google.cloud.pubsub_v1 import PublisherClient

            return PublisherClient()

    def subscriber(self) -> SubscriberClient:
        with self.client_env():
            from google.cloud.pubsub_v1 import SubscriberClient

            return SubscriberClient()


class FirestoreEmulator(JavaEmulator):
    """Google's Firestore emulator, run as `java -cp ... CloudFirestore start` (the gcloud wrapper orphans it)."""

    name = "firestore-emulator"
    title = "Firestore emulator"
    host_variable = "FIRESTORE_EMULATOR_HOST"

    def argv(self) -> list[str]:
        jar = check_firestore_emulator()
        return [java_bin(), "-cp", str(jar), "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
                "start", f"--host={HOST}", f"--port={self.port}", f"--project_id={self.project}"]

    def client(self, project: str | None = None) -> firestore.Client:
        with self.client_env():
            from google.cloud import firestore

            return firestore.Client(project=project or self.project)

    def reset(self, project: str | None = None) -> None:
        """Delete every document of the project (the emulator's own reset endpoint)."""
        url = (f"http://{self.host}/emulator/v1/projects/{project or self.project}"
               "/databases/(default)/documents")
        request = urllib.request.Request(url, method="DELETE")
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status != 200:
                raise RuntimeError(f"Firestore reset answered {response.status}")
