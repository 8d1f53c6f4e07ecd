#!/usr/bin/env python3
"""Checks that deploy/docker-compose.yml parses and agrees with the image and its routes.yaml.

- hookfan is built from deploy/Dockerfile with the repository as context, runs read-only, and
  its published ports are the image's EXPOSE ports and routes.yaml's listen/admin_listen ports;
- the config is mounted where the image's HOOKFAN_CONFIG says, the spool volume at the image's
  VOLUME, which is routes.yaml's data_dir; every bind-mounted file exists;
- routes.yaml's handler URL and SQS endpoint name the compose services and their ports, and the
  queue is the one the emulator creates and the reader reads;
- the emulator is moto at the version the tests pin (tests/it/moto.rs);
- every service that verifies signatures has the secret hookfan signs with.

Usage: check_compose.py   (exit 1 on any problem)
"""

import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

DEPLOY = Path(__file__).resolve().parent.parent
REPO = DEPLOY.parent
problems = []


def expect(what, want, got):
    if want != got:
        problems.append(f"{what}: expected {want!r}, found {got!r}")


def runtime_stage(dockerfile):
    text = dockerfile.read_text().replace("\\\n", " ")
    stage = text.split(" AS runtime", 1)[1]
    expose = set(re.search(r"^EXPOSE (.+)$", stage, re.M).group(1).split())
    volume = re.search(r'^VOLUME \["([^"]+)"\]', stage, re.M).group(1)
    config = re.search(r"HOOKFAN_CONFIG=(\S+)", stage).group(1)
    return {"expose": {int(p) for p in expose}, "volume": volume, "config": config}


def main():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    expect("services", {"hookfan", "sqs", "queue-reader", "handler"}, set(services))
    image = runtime_stage(REPO / "deploy" / "Dockerfile")

    hookfan = services["hookfan"]
    expect("hookfan build context", REPO, (DEPLOY / hookfan["build"]["context"]).resolve())
    expect("hookfan dockerfile", "deploy/Dockerfile", hookfan["build"]["dockerfile"])
    expect("hookfan read_only", True, hookfan.get("read_only"))
    env = hookfan["environment"]
    expect("hookfan HOOKFAN_CONFIG", image["config"], env.get("HOOKFAN_CONFIG"))

    mounts = {}
    for service_name, service in services.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                if not (DEPLOY / source).is_file():
                    problems.append(f"{service_name}: mounts {source}, which does not exist")
            mounts.setdefault(service_name, {})[target] = source
    config_source = mounts["hookfan"].get(image["config"])
    if config_source is None:
        problems.append(f"hookfan: nothing mounted at the image's HOOKFAN_CONFIG {image['config']}")
        return
    routes_text = (DEPLOY / config_source).read_text()
    routes = yaml.safe_load(re.sub(r"\$\{[^}]*\}", "x", routes_text))
    expect("hookfan spool volume", "spool", mounts["hookfan"].get(image["volume"]))
    expect("routes.yaml data_dir", image["volume"], routes["data_dir"])
    expect("named volumes", {"spool"}, set(compose.get("volumes", {})))

    published = {int(p.rsplit(":", 1)[1]) for p in hookfan["ports"]}
    expect("hookfan's published container ports vs the image's EXPOSE", image["expose"], published)
    listen_ports = {int(routes["listen"].rsplit(":", 1)[1]), int(routes["admin_listen"].rsplit(":", 1)[1])}
    expect("routes.yaml listen/admin_listen ports vs published", published, listen_ports)
    if not routes["admin_listen"].startswith("0.0.0.0:"):
        problems.append("routes.yaml admin_listen must be 0.0.0.0:PORT to be published")

    by_name = {r["name"]: r for r in routes["routes"]}
    handler_url = urlparse(by_name["handler"]["http"]["url"])
    expect("handler route host", "handler", handler_url.hostname)
    expect("handler route port", int(services["handler"]["environment"]["PORT"]), handler_url.port)

    sqs_cmd = " ".join(services["sqs"]["command"])
    moto_rs = (REPO / "tests" / "it" / "moto.rs").read_text()
    pinned = re.search(r'MOTO_SPEC: &str = "([^"]+)"', moto_rs).group(1)
    if f"'{pinned}'" not in sqs_cmd:
        problems.append(f"sqs: does not install {pinned}, the moto the tests pin: {sqs_cmd}")
    moto_port = int(re.search(r"-p (\d+)", sqs_cmd).group(1))
    sqs_route = by_name["queue"]["sqs"]
    for key in ("queue_url", "endpoint_url"):
        url = urlparse(sqs_route[key])
        expect(f"queue route {key} host", "sqs", url.hostname)
        expect(f"queue route {key} port", moto_port, url.port)
    queue = sqs_route["queue_url"].rsplit("/", 1)[1]
    if f"QueueName='{queue}'" not in " ".join(services["sqs"]["healthcheck"]["test"]):
        problems.append(f"sqs: its healthcheck does not create the queue {queue}")
    expect("queue-reader SQS_QUEUE_URL", sqs_route["queue_url"],
           services["queue-reader"]["environment"]["SQS_QUEUE_URL"])
    for name in ("queue-reader", "handler"):
        expect(f"{name} STREAM_API_SECRET", env["STREAM_API_SECRET"],
               services[name]["environment"]["STREAM_API_SECRET"])
    expect("hookfan depends on", {"sqs", "handler"}, set(hookfan["depends_on"]))


main()
for p in problems:
    print(f"[compose] PROBLEM {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print("[compose] docker-compose.yml parses and agrees with deploy/Dockerfile, its routes.yaml and tests/it/moto.rs")
