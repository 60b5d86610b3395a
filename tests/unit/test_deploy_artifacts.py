"""The deployment artifacts under deploy/ (Docker does not run here, so they are checked
as data): every YAML and JSON file parses; every command they run is one the ``postbacks``
CLI has; every environment variable they set is one of its OPTIONS with a valid value;
probes and scrapes hit routes and ports the apps serve; the metric names in the dashboard
and alert rules are ones the code exports, with labels it has; the RabbitMQ definitions
hold exactly the topology the code declares."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from ingest.app import create_app as create_receiver
from ingest.metrics import ReceiverMetrics
from ingest.names import DELIVERY_LIMIT, Names
from ingest.settings import BY_VARIABLE, OPTIONS, Settings
from ingest.topology import QUORUM
from worker.cli import _parser
from worker.dedup import MemoryDedup
from worker.http import create_app as create_worker_http
from worker.metrics import WorkerMetrics
from worker.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCS = ROOT / "docs" / "operating.md"
VARIABLES = {option.variable for option in OPTIONS}
# Labels Prometheus itself adds to every scraped series (target labels, histogram buckets).
TARGET_LABELS = {"instance", "job", "pod", "namespace", "le", "code_class"}


# --- helpers -------------------------------------------------------------------------------


def load_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_objects() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name in ("kustomization.yaml", "rabbitmq-cluster.yaml"):
            continue
        objects += load_yaml(path)
    return objects


def k8s(kind: str, name: str) -> dict[str, Any]:
    found = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def cli_accepts(args: list[str]) -> bool:
    try:
        _parser().parse_args(args)
    except SystemExit:
        return False
    return True


def families() -> dict[str, tuple[str, frozenset[str]]]:
    """Every metric the receiver and a worker export: name -> (type, label names)."""
    out: dict[str, tuple[str, frozenset[str]]] = {}
    for holder in (ReceiverMetrics(), WorkerMetrics()):
        for value in vars(holder).values():
            if isinstance(value, MetricWrapperBase):
                out[value._name] = (str(value._type), frozenset(value._labelnames))
    return out


SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name a scrape shows -> the labels it may carry."""
    out: dict[str, frozenset[str]] = {}
    for name, (kind, labels) in families().items():
        for suffix in SUFFIXES[kind]:
            out[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return out


METRIC = re.compile(r"\b(postbacks_[a-z0-9_]+)\b(\{[^}]*\})?")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def check_promql(expr: str, where: str) -> set[str]:
    """The metric names in ``expr``, each checked against what the code exports."""
    series = exported_series()
    used: set[str] = set()
    labels: set[str] = set()
    for name, matchers in METRIC.findall(expr):
        assert name in series, f"{where}: {name} is not exported by the code"
        used.add(name)
        labels |= series[name]
        for label in MATCHER.findall(matchers or ""):
            assert label in series[name], f"{where}: {name} has no label {label!r}"
    assert used, f"{where}: no postbacks_ metric in {expr!r}"
    for group in GROUPING.findall(expr):
        for label in (part.strip() for part in group.split(",")):
            if label:
                assert label in labels | TARGET_LABELS, f"{where}: no label {label!r} in {used}"
    return used


def routes(app: Any) -> set[str]:
    return {route.resource.canonical for route in app.router.routes()}


RECEIVER_ROUTES = routes(create_receiver(Settings()))
WORKER_ROUTES = routes(create_worker_http(Worker(Settings(), MemoryDedup(60), WorkerMetrics())))


def slugs(markdown: str) -> set[str]:
    """GitHub's anchors of the headings of a Markdown text."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


# --- every file parses -----------------------------------------------------------------------


def deploy_files(*suffixes: str) -> Iterator[Path]:
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file() and path.suffix in suffixes:
            yield path


@pytest.mark.parametrize("path", list(deploy_files(".yaml", ".yml")), ids=str)
def test_every_yaml_file_parses(path: Path) -> None:
    documents = load_yaml(path)
    assert documents and all(isinstance(doc, dict) for doc in documents)


@pytest.mark.parametrize("path", list(deploy_files(".json")), ids=str)
def test_every_json_file_parses(path: Path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)


def test_the_expected_artifacts_exist() -> None:
    for name in (
        "Dockerfile",
        "compose.yaml",
        "rabbitmq/definitions.json",
        "grafana/postbacks-dashboard.json",
        "prometheus/alerts.yaml",
        "k8s/receiver-deployment.yaml",
        "k8s/receiver-service.yaml",
        "k8s/receiver-pdb.yaml",
        "k8s/receiver-hpa.yaml",
        "k8s/worker-deployment.yaml",
        "k8s/worker-scaledobject.yaml",
    ):
        assert (DEPLOY / name).is_file(), name


# --- metrics: names, units, and what dashboards and alerts use --------------------------------


def test_metric_names_follow_the_prometheus_naming_guide() -> None:
    """postbacks_ prefix; snake case; counters exported with _total; histograms and
    gauges carry their unit (seconds, messages, postbacks, bytes) or are a 0/1 state (_up)."""
    units = ("_seconds", "_messages", "_postbacks", "_bytes")
    for name, (kind, labels) in families().items():
        assert re.fullmatch(r"postbacks_[a-z][a-z0-9_]*[a-z0-9]", name), name
        assert not name.endswith("_total"), f"{name}: the client adds _total"
        if kind == "histogram":
            assert name.endswith(units), f"{name}: a histogram names its unit"
        if kind == "gauge":
            assert name.endswith((*units, "_up")), f"{name}: a gauge names its unit"
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", label) for label in labels), name


def test_the_code_exports_every_metric_the_operator_asked_for() -> None:
    wanted = {
        "postbacks_http_requests": {"code"},  # requests by answer
        "postbacks_intake_confirm_seconds": set(),  # publish -> confirm latency
        "postbacks_intake_batch_postbacks": set(),  # receiver batch sizes
        "postbacks_worker_batch_postbacks": set(),  # worker batch sizes
        "postbacks_events": {"origin", "family", "status"},
        "postbacks_duplicates_dropped": set(),
        "postbacks_quarantined": {"kind"},
        "postbacks_dedup_seconds": set(),  # dedup-store latency
        "postbacks_processing_seconds": set(),  # received_at -> event committed
        "postbacks_intake_queue_messages": set(),  # intake depth seen by the worker
        "postbacks_quarantine_queue_messages": set(),  # quarantine depth seen by the worker
        "postbacks_history_appended_bytes": set(),  # what the history grows by
        "postbacks_history_max_bytes": set(),  # its limits, for the alert
        "postbacks_history_max_age_seconds": set(),
    }
    exported = families()
    for name, labels in wanted.items():
        assert name in exported, name
        assert exported[name][1] == labels, name


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEPLOY / "grafana" / "postbacks-dashboard.json").read_text())
    return data


def dashboard_exprs() -> list[tuple[str, str]]:
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def test_dashboard_queries_use_only_metrics_the_code_exports() -> None:
    used: set[str] = set()
    for title, expr in dashboard_exprs():
        used |= check_promql(expr, f"dashboard panel {title!r}")
    # ... and it shows every metric the code exports.
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    assert set(families()) <= shown, set(families()) - shown


def test_dashboard_is_importable_grafana_json() -> None:
    data = dashboard()
    assert data["uid"] and data["title"] and data["schemaVersion"] >= 30
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [panel["id"] for panel in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]


def alert_rules() -> list[dict[str, Any]]:
    (document,) = load_yaml(DEPLOY / "prometheus" / "alerts.yaml")
    rules: list[dict[str, Any]] = []
    for group in document["groups"]:
        rules += group["rules"]
    return rules


def test_alert_rules_use_only_metrics_the_code_exports() -> None:
    for rule in alert_rules():
        check_promql(rule["expr"], f"alert {rule['alert']}")


def test_alert_rules_cover_what_the_operator_asked_for() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    asked = {
        "PostbacksIntakeBacklogGrowing": "postbacks_intake_queue_messages",
        "PostbacksQuarantineNotEmpty": "postbacks_quarantine_queue_messages",
        "PostbacksConfirmLatencyHigh": "postbacks_intake_confirm_seconds_bucket",
        "PostbacksNoPostbacks": "postbacks_http_requests_total",
        "PostbacksHistoryShorterThanMaxAge": "postbacks_history_appended_bytes_total",
    }
    for alert, metric in asked.items():
        assert metric in rules[alert]["expr"], alert
    # The history's growth over its age, against its byte limit.
    history = rules["PostbacksHistoryShorterThanMaxAge"]["expr"]
    assert "postbacks_history_max_age_seconds" in history
    assert "postbacks_history_max_bytes" in history


def test_every_alert_is_complete_and_explained_in_the_operating_guide() -> None:
    anchors = slugs(DOCS.read_text())
    for rule in alert_rules():
        assert re.fullmatch(r"Postbacks[A-Za-z0-9]+", rule["alert"])
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == "docs/operating.md" and anchor == rule["alert"].lower()
        assert anchor in anchors, f"docs/operating.md has no section {rule['alert']}"


# --- Dockerfile -----------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of deploy/Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        instruction, _, arguments = line.partition(" ")
        out.append((instruction.upper(), arguments.strip()))
    return out


def test_dockerfile_is_slim_non_root_and_runs_the_cli() -> None:
    steps = dockerfile()
    bases = [args for op, args in steps if op == "FROM"]
    assert bases and all("-slim" in base for base in bases)
    final = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    users = [args for op, args in steps[final:] if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    entrypoint = json.loads(next(args for op, args in steps if op == "ENTRYPOINT"))
    command = json.loads(next(args for op, args in steps if op == "CMD"))
    assert entrypoint == ["postbacks"]
    assert cli_accepts(command)
    exposed = {int(port) for op, args in steps if op == "EXPOSE" for port in args.split()}
    assert exposed == {
        int(BY_VARIABLE["INGEST_PORT"].default or 0),
        int(BY_VARIABLE["WORKER_METRICS_PORT"].default or 0),
    }


def test_dockerfile_copies_only_what_exists_and_what_the_ignore_file_lets_in() -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for op, args in dockerfile():
        if op == "COPY" and not args.startswith("--from"):
            *sources, _destination = shlex.split(args)
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source.rstrip("/") in allowed, f"{source} is ignored by the build"
    # pyproject.toml names these; the image build needs them all.
    for needed in ("pyproject.toml", "README.md", "ingest", "worker"):
        assert needed in allowed, needed


# --- compose -------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    (document,) = load_yaml(DEPLOY / "compose.yaml")
    data: dict[str, Any] = document
    return data


def ours(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if s.get("image", "").startswith("sinch-")}


def test_compose_has_the_broker_redis_one_receiver_and_two_workers() -> None:
    services = compose()["services"]
    assert "management" in services["rabbitmq"]["image"]
    assert services["redis"]["image"].startswith("redis:")
    app = ours(services)
    assert set(app) == {"receiver", "worker"}
    assert app["receiver"]["command"] == ["receive"]
    assert app["receiver"].get("deploy", {}).get("replicas", 1) == 1
    assert app["worker"]["command"] == ["work"]
    assert app["worker"]["deploy"]["replicas"] == 2
    for service in app.values():
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / service["build"]["context"] / "deploy" / "Dockerfile").is_file()
        assert set(service["depends_on"]) == {"rabbitmq", "redis"}


def test_compose_commands_and_variables_exist_in_the_cli() -> None:
    services = compose()["services"]
    for name, service in ours(services).items():
        assert cli_accepts(service["command"]), name
        environment = {k: str(v) for k, v in service["environment"].items()}
        assert set(environment) <= VARIABLES, set(environment) - VARIABLES
        settings = Settings.load(environ=environment)  # every value is valid
        assert settings.redis_url, f"{name}: several workers need the shared dedup store"
        host = urlsplit(settings.amqp_url).hostname
        assert host in services, f"{name}: AMQP_URL names no service"
        assert urlsplit(settings.redis_url).hostname in services


def test_compose_healthchecks_hit_the_ready_route_on_the_configured_port() -> None:
    services = ours(compose()["services"])
    for name, port_variable, known in (
        ("receiver", "INGEST_PORT", RECEIVER_ROUTES),
        ("worker", "WORKER_METRICS_PORT", WORKER_ROUTES),
    ):
        service = services[name]
        settings = Settings.load(environ={k: str(v) for k, v in service["environment"].items()})
        port = settings.port if port_variable == "INGEST_PORT" else settings.metrics_port
        (url,) = re.findall(r"http://[^'\"]+", " ".join(service["healthcheck"]["test"]))
        parts = urlsplit(url)
        assert parts.port == port and parts.path in known and parts.path == "/readyz"


def test_compose_broker_users_and_definitions_fit_together() -> None:
    services = compose()["services"]
    mounts = {
        target: (DEPLOY / source).resolve()
        for source, target, *_ in (v.split(":") for v in services["rabbitmq"]["volumes"])
        if source.startswith("./")
    }
    for source in mounts.values():
        assert source.is_file(), source
    config = mounts["/etc/rabbitmq/conf.d/20-postbacks.conf"].read_text()
    assert "definitions.local.path = /etc/rabbitmq/definitions.d" in config
    imported = [t for t in mounts if t.startswith("/etc/rabbitmq/definitions.d/")]
    assert {mounts[t].name for t in imported} == {"compose-users.json", "definitions.json"}
    users = json.loads((DEPLOY / "rabbitmq" / "compose-users.json").read_text())
    amqp = urlsplit(str(ours(services)["receiver"]["environment"]["AMQP_URL"]))
    (user,) = [u for u in users["users"] if u["name"] == amqp.username]
    raw = base64.b64decode(user["password_hash"])
    salt, digest = raw[:4], raw[4:]
    assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert hashlib.sha256(salt + (amqp.password or "").encode()).digest() == digest
    assert {p["user"] for p in users["permissions"]} == {amqp.username}


def test_compose_prometheus_scrapes_the_ports_the_apps_serve() -> None:
    (config,) = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    receiver, worker = jobs["postbacks-receiver"], jobs["postbacks-worker"]
    assert receiver["dns_sd_configs"][0]["port"] == 8080
    assert worker["dns_sd_configs"][0]["port"] == 9101
    assert receiver["metrics_path"] in RECEIVER_ROUTES
    assert worker["metrics_path"] in WORKER_ROUTES
    assert config["rule_files"] == ["/etc/prometheus/alerts.yaml"]


# --- RabbitMQ definitions ----------------------------------------------------------------------


def test_definitions_hold_exactly_the_topology_the_code_declares() -> None:
    """For the default namespace: same queues, exchanges, bindings and arguments as
    ingest/topology.py, else a declaration by the code clashes (PRECONDITION_FAILED).
    tests/integration/test_operator_definitions.py proves it against the real broker."""
    names = Names("postbacks")
    data = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
    queues = {q["name"]: q for q in data["queues"]}
    assert set(queues) == {names.intake, names.quarantine, names.unrouted}
    for queue in queues.values():
        assert queue["durable"] is True and queue["auto_delete"] is False
        assert queue["vhost"] == "/"
    quorum = dict(QUORUM or {})
    assert queues[names.quarantine]["arguments"] == quorum
    assert queues[names.unrouted]["arguments"] == quorum
    assert queues[names.intake]["arguments"] == {
        **quorum,
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": names.quarantine,
    }
    exchanges = {e["name"]: e for e in data["exchanges"]}
    assert set(exchanges) == {names.events, names.unrouted}
    assert exchanges[names.events]["type"] == "topic"
    assert exchanges[names.events]["arguments"] == {"alternate-exchange": names.unrouted}
    assert exchanges[names.unrouted]["type"] == "fanout"
    assert exchanges[names.unrouted]["arguments"] == {}
    for exchange in exchanges.values():
        assert exchange["durable"] is True and exchange["auto_delete"] is False
        assert exchange["internal"] is False
    assert data["bindings"] == [
        {
            "source": names.unrouted,
            "vhost": "/",
            "destination": names.unrouted,
            "destination_type": "queue",
            "routing_key": "",
            "arguments": {},
        }
    ]


# --- Kubernetes ---------------------------------------------------------------------------------


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return found


def environment(container: dict[str, Any]) -> dict[str, str]:
    """The variables a container gets: its ConfigMaps' data and its env (secret values
    taken from secret.example.yaml)."""
    (secret,) = load_yaml(K8S / "secret.example.yaml")
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        values.update(k8s("ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            values[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"]
            values[item["name"]] = secret["stringData"][ref["key"]]
    return values


def test_kustomization_lists_files_that_exist() -> None:
    (kustomization,) = load_yaml(K8S / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    kinds = {o["kind"] for r in kustomization["resources"] for o in load_yaml(K8S / r)}
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ScaledObject",
    } <= kinds
    image_names = {image["name"] for image in kustomization["images"]}
    for name in ("postbacks-receiver", "postbacks-worker"):
        for container in containers(k8s("Deployment", name)):
            assert container["image"] in image_names


@pytest.mark.parametrize(
    ("name", "command", "port_variable"),
    [
        ("postbacks-receiver", "receive", "INGEST_PORT"),
        ("postbacks-worker", "work", "WORKER_METRICS_PORT"),
    ],
)
def test_k8s_deployments_run_cli_commands_with_cli_variables(
    name: str, command: str, port_variable: str
) -> None:
    deployment = k8s("Deployment", name)
    pod = deployment["spec"]["template"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    (container,) = containers(deployment)
    args = container.get("command", []) + container["args"]
    assert args == [command] and cli_accepts(args)
    values = environment(container)
    assert set(values) <= VARIABLES, set(values) - VARIABLES
    settings = Settings.load(environ=values)
    if command == "work":
        assert settings.redis_url, "several workers need REDIS_URL (the shared dedup store)"
    port = settings.port if port_variable == "INGEST_PORT" else settings.metrics_port
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    known = RECEIVER_ROUTES if command == "receive" else WORKER_ROUTES
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ):
        get = container[probe]["httpGet"]
        assert get["path"] == path and path in known, probe
        assert ports[get["port"]] == port, probe
    annotations = pod["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] in known
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # SIGTERM stops a command within 10 s: give it that, and the preStop pause.
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 15


def test_k8s_receiver_service_pdb_and_hpa_point_at_the_receiver() -> None:
    deployment = k8s("Deployment", "postbacks-receiver")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = containers(deployment)
    service = k8s("Service", "postbacks-receiver")
    assert service["spec"]["selector"].items() <= labels.items()
    port_names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    pdb = k8s("PodDisruptionBudget", "postbacks-receiver")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = k8s("HorizontalPodAutoscaler", "postbacks-receiver")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "postbacks-receiver")
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"]
    assert container["resources"]["requests"]["cpu"]  # the HPA's CPU target needs it


def test_k8s_worker_scales_with_keda_on_the_intake_queue_depth() -> None:
    deployment = k8s("Deployment", "postbacks-worker")
    (container,) = containers(deployment)
    namespace = Settings.load(environ=environment(container)).namespace
    scaled = k8s("ScaledObject", "postbacks-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "postbacks-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == Names(namespace).intake
    assert trigger["metadata"]["mode"] == "QueueLength"
    assert int(trigger["metadata"]["value"]) > 0
    auth = k8s("TriggerAuthentication", trigger["authenticationRef"]["name"])
    (secret_ref,) = auth["spec"]["secretTargetRef"]
    assert (secret_ref["parameter"], secret_ref["key"]) == ("host", "AMQP_URL")
    pdb = k8s("PodDisruptionBudget", "postbacks-worker")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_k8s_podmonitor_scrapes_named_ports_of_both_roles() -> None:
    monitor = k8s("PodMonitor", "postbacks")
    ports = {endpoint["port"] for endpoint in monitor["spec"]["podMetricsEndpoints"]}
    named = set()
    for name in ("postbacks-receiver", "postbacks-worker"):
        deployment = k8s("Deployment", name)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        named |= {p["name"] for c in containers(deployment) for p in c["ports"]}
    assert ports == named


def test_the_rabbitmq_cluster_has_three_nodes_and_pauses_a_minority() -> None:
    (cluster,) = load_yaml(K8S / "rabbitmq-cluster.yaml")
    assert cluster["kind"] == "RabbitmqCluster"
    assert cluster["spec"]["replicas"] == 3
    assert (
        "cluster_partition_handling = pause_minority"
        in (cluster["spec"]["rabbitmq"]["additionalConfig"])
    )
    text = (K8S / "rabbitmq-cluster.yaml").read_text()
    urls = next(line for line in text.splitlines() if "AMQP_URL: amqp://" in line)
    listed = urls.split("AMQP_URL:", 1)[1].strip()
    assert Settings.load({"AMQP_URL": listed}).amqp_urls == tuple(listed.split(","))
    assert len(listed.split(",")) == 3
