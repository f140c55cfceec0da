"""The GPU deployment files, validated without Docker, Helm or a cluster: the Helm chart's templates
render to valid Kubernetes YAML with its values, its ports and probes are the launcher's, the HPA's
metric is the one prometheus-adapter serves, and the image pins the TensorRT the support table is for.

The chart's templates use a small subset of Helm's template language on purpose -- `{{ .Values.x }}`,
`{{ .Release.Name }}`, `{{ .Chart.Name }}` and `{{- toYaml .Values.x | nindent N }}` -- which
`render` below implements; any other action fails this test rather than go unvalidated.
"""

import re
import shlex
from pathlib import Path

import pytest
import yaml

from vhs.export.tensorrt_support import load_support_table
from vhs.launcher.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "vhs-triton"
RELEASE = "vhs"
# `{{-` trims all whitespace before the action (newlines included), `{{` keeps the indentation.
ACTION = re.compile(r"(?:(?P<trimmed>\s*)\{\{-|(?P<indent>[ \t]*)\{\{)\s*(?P<body>.*?)\s*\}\}")
# Endpoints the chart's probes and scrape use; test_probe_and_metrics_endpoints_answer (in
# test_orchestrator_metrics.py) checks each against the real server.
PROBE_PATHS = {"/v2/health/ready", "/v2/health/live"}


def lookup(context: dict, path: str):
    value = context
    for key in path.lstrip(".").split("."):
        value = value[key]
    return value


def render(template: str, context: dict) -> str:
    def action(match: re.Match) -> str:
        body = match["body"]
        to_yaml = re.fullmatch(r"toYaml (\.[\w.]+) \| nindent (\d+)", body)
        if to_yaml:
            text = yaml.safe_dump(lookup(context, to_yaml[1]), default_flow_style=False).rstrip("\n")
            padding = " " * int(to_yaml[2])
            return (match["indent"] or "") + "\n" + "\n".join(padding + line for line in text.splitlines())
        if re.fullmatch(r"\.(Values|Release|Chart)(\.\w+)+", body):
            return (match["indent"] or "") + str(lookup(context, body))
        raise AssertionError(f"template action the test renderer does not know: {{{{ {body} }}}}")

    return ACTION.sub(action, template)


@pytest.fixture(scope="module")
def values():
    return yaml.safe_load((CHART / "values.yaml").read_text())


@pytest.fixture(scope="module")
def rendered(values):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    context = {"Values": values, "Release": {"Name": RELEASE}, "Chart": {"Name": chart["name"]}}
    documents = {}
    for template in sorted((CHART / "templates").glob("*.yaml")):
        for document in yaml.safe_load_all(render(template.read_text(), context)):
            documents[document["kind"]] = document
    return documents


def test_the_chart_renders_to_the_four_objects(rendered):
    assert set(rendered) == {"Deployment", "Service", "ServiceMonitor", "HorizontalPodAutoscaler"}
    assert all(document["metadata"]["name"] == RELEASE for document in rendered.values())


def triton_container(rendered):
    (container,) = rendered["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def test_the_container_runs_the_launcher_on_the_charts_ports(rendered, values):
    container = triton_container(rendered)
    assert container["command"] == ["vhs-serve"]
    args = build_parser().parse_args(container["args"])
    assert args.host == "0.0.0.0"
    launcher_ports = {"http": args.http_port, "grpc": args.grpc_port, "metrics": args.metrics_port}
    assert launcher_ports == values["ports"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == launcher_ports
    service_ports = {p["name"]: (p["port"], p["targetPort"]) for p in rendered["Service"]["spec"]["ports"]}
    assert service_ports == {name: (port, name) for name, port in launcher_ports.items()}
    # The launcher's own defaults are the chart's: `make serve` and the pods answer on the same ports.
    defaults = build_parser().parse_args(["--model-repository", "x"])
    assert (defaults.http_port, defaults.grpc_port, defaults.metrics_port) == (8000, 8001, 8002)
    assert args.model_repository == Path(f"/models/{values['preset']}/model_repository")
    assert args.cuda_memory_pool_byte_size == values["cudaMemoryPoolBytes"]
    assert args.ready_timeout == values["readyTimeoutSeconds"]


def test_probes_use_triton_health_endpoints_and_outlast_the_launchers_wait(rendered, values):
    container = triton_container(rendered)
    probes = {kind: container[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert {probe["httpGet"]["path"] for probe in probes.values()} == PROBE_PATHS
    assert all(probe["httpGet"]["port"] == "http" for probe in probes.values())
    assert probes["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    startup = probes["startupProbe"]
    # Longer than the wait it guards, so the launcher's timeout (which names the late model) fires first.
    assert startup["periodSeconds"] * startup["failureThreshold"] > values["readyTimeoutSeconds"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"models": "/models", "shared-memory": "/dev/shm"}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_the_init_container_runs_the_export_image_into_the_servers_folder(rendered, values):
    (init,) = rendered["Deployment"]["spec"]["template"]["spec"]["initContainers"]
    assert init["image"] == f"{values['exportImage']['repository']}:{values['exportImage']['tag']}"
    script = shlex.split(init["args"][0])
    assert f"/models/{values['preset']}/manifest.json" in script
    assert "make" not in script, "the images have no make"
    export = script[script.index("vhs-export") :]
    option = {key: value for key, value in zip(export[1::2], export[2::2], strict=False)}
    assert option["--output"] == f"/models/{values['preset']}"
    assert option["--backend"] == "tensorrt_plan" and option["--precision"] == values["gpuPrecision"]
    assert init["resources"] == values["exportResources"]
    # One component group in memory at a time, up to four copies of it: Gemma-2-2B in fp32 is 10.4 GB.
    assert _gibibytes(values["exportResources"]["limits"]["memory"]) * 2**30 >= 4 * 2.61e9 * 4


def _gibibytes(quantity: str) -> float:
    assert quantity.endswith("Gi"), quantity
    return float(quantity[:-2])


def test_prometheus_scrapes_the_metrics_port_and_the_hpa_scales_on_queue_time(rendered, values):
    (endpoint,) = rendered["ServiceMonitor"]["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert rendered["ServiceMonitor"]["metadata"]["labels"]["release"] == values["prometheus"]["release"]
    hpa = rendered["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": RELEASE}
    (metric,) = hpa["metrics"]
    adapter = yaml.safe_load((ROOT / "deploy" / "helm" / "prometheus-adapter-values.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    assert metric["pods"]["metric"]["name"] == rule["name"]["as"]
    assert "nv_inference_queue_duration_us" in rule["metricsQuery"]
    assert "nv_inference_request_success" in rule["metricsQuery"]
    assert int(metric["pods"]["target"]["averageValue"]) == values["autoscaling"]["queueTimePerRequestUs"]


def test_the_image_pins_the_triton_release_and_tensorrt_of_the_support_table(values):
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    table = load_support_table()
    release = re.search(r"^ARG TRITON_RELEASE=(\S+)$", dockerfile, re.MULTILINE)[1]
    tensorrt = re.search(r"^ARG TENSORRT_VERSION=(\S+)$", dockerfile, re.MULTILINE)[1]
    assert "FROM nvcr.io/nvidia/tritonserver:${TRITON_RELEASE}-py3" in dockerfile
    assert table.container == f"nvcr.io/nvidia/tritonserver:{release}-py3"
    assert table.tensorrt_version.startswith(tensorrt + ".")
    assert values["image"]["tag"] == values["exportImage"]["tag"] == release
    # Served as built: no make, no export, no download when the container starts.
    command = dockerfile[dockerfile.index("\nCMD ") :]
    assert "make" not in command and "vhs-export" not in command and "pip" not in command
