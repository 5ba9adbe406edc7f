"""Kubernetes manifests for the seven services, as code: `python deploy/k8s/manifests.py`
writes deploy/k8s/llmtwin.yaml (`kubectl apply -f deploy/k8s/llmtwin.yaml`).

The servers (Kafka, MongoDB, Qdrant, MLflow, Prometheus) come from their own operators or
charts (Strimzi, the MongoDB operator, Qdrant's and MLflow's charts, kube-prometheus);
the services reach them through the URLs of the `llmtwin-settings` ConfigMap, and secrets
(API keys, tokens) through the optional `llmtwin-secrets` Secret. One function builds every
service, so the seven stay alike; tests/deploy/test_k8s.py validates the output against the
Kubernetes schemas and checks it against docker-compose.yml and the Settings.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

OUT = Path(__file__).with_name("llmtwin.yaml")
NAMESPACE = "llmtwin"
IMAGE_TAG = "dev"
UID = 10001  # the `twin` user of deploy/Dockerfile.service

SETTINGS = {
    "TWIN_KAFKA_BOOTSTRAP": "kafka-bootstrap:9092",
    # Partitions bound the replicas of one stage: create the topics with room to grow.
    "TWIN_TOPIC_PARTITIONS": "12",
    "TWIN_WAREHOUSE_URL": "mongodb://mongo-0.mongo,mongo-1.mongo,mongo-2.mongo/llmtwin?replicaSet=rs0",
    "TWIN_QDRANT_URL": "http://qdrant:6333",
    "TWIN_MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "TWIN_INFERENCE_API_URL": "http://inference-api:8001",
    "TWIN_CRAWL_ALLOW_PRIVATE_HOSTS": "false",
}


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    replicas: int
    cpu: str
    memory: str
    args: tuple[str, ...] = ()
    gpu: bool = False  # the CUDA image and one GPU (deploy/compose.gpu.yml's variant)
    singleton: bool = False  # never two at once, not even during a rollout
    autoscale_to: int = 0  # >0: a HorizontalPodAutoscaler up to this many replicas


SERVICES = (
    Service("crawler", 8002, 2, "500m", "1Gi", args=("serve",)),
    Service("cleaner", 8003, 2, "250m", "512Mi"),
    Service("embedder", 8004, 2, "2", "3Gi"),
    Service("dataset-builder", 8005, 2, "250m", "512Mi"),
    # One trigger: it counts samples per twin and starts the training jobs.
    Service("trainer", 8006, 1, "4", "16Gi", args=("serve",), gpu=True, singleton=True),
    Service("inference-api", 8001, 2, "2", "8Gi", gpu=True, autoscale_to=8),
    Service("web", 8000, 2, "250m", "512Mi", autoscale_to=6),
)


def labels(service: Service) -> dict[str, str]:
    return {"app.kubernetes.io/name": service.name, "app.kubernetes.io/part-of": "llmtwin"}


def deployment(service: Service) -> dict:
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 15, "timeoutSeconds": 5}
    limits = {"memory": service.memory, **({"nvidia.com/gpu": "1"} if service.gpu else {})}
    container = {
        "name": service.name,
        "image": f"llmtwin/{service.name}{'-gpu' if service.gpu else ''}:{IMAGE_TAG}",
        "args": list(service.args),
        "ports": [{"name": "http", "containerPort": service.port}],
        "envFrom": [{"configMapRef": {"name": "llmtwin-settings"}},
                    {"secretRef": {"name": "llmtwin-secrets", "optional": True}}],
        "resources": {"requests": {"cpu": service.cpu, "memory": service.memory}, "limits": limits},
        "startupProbe": {**probe, "failureThreshold": 40},  # model loading may take minutes
        "livenessProbe": {**probe, "failureThreshold": 4},
        # Traffic only once it can serve: a stage consuming, the inference-api with a champion loaded.
        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": "http"}, "failureThreshold": 2},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": service.name, "namespace": NAMESPACE, "labels": labels(service)},
        "spec": {
            "replicas": service.replicas,
            "strategy": {"type": "Recreate" if service.singleton else "RollingUpdate"},
            "selector": {"matchLabels": labels(service)},
            "template": {
                "metadata": {"labels": labels(service),
                             "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(service.port),
                                             "prometheus.io/path": "/metrics"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "fsGroup": UID},
                    # No <SERVICE>_PORT-style variables injected for every Service of the namespace.
                    "enableServiceLinks": False,
                    "containers": [container],
                    # Scratch space (model caches, job logs); the state lives in the stores.
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def cluster_service(service: Service) -> dict:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": service.name, "namespace": NAMESPACE, "labels": labels(service)},
        "spec": {"selector": labels(service), "ports": [{"name": "http", "port": service.port, "targetPort": "http"}]},
    }


def autoscaler(service: Service) -> dict:
    # CPU is what a bare cluster can measure; with prometheus-adapter, scale on request rate
    # (twin_inference_requests_total) instead, and the stages on twin_stage_consumer_lag (KEDA).
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": service.name, "namespace": NAMESPACE, "labels": labels(service)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": service.name},
            "minReplicas": service.replicas, "maxReplicas": service.autoscale_to,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
        },
    }


def resources() -> list[dict]:
    docs: list[dict] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "llmtwin-settings", "namespace": NAMESPACE},
         "data": SETTINGS},
    ]
    for service in SERVICES:
        docs += [deployment(service), cluster_service(service)]
        if service.autoscale_to:
            docs.append(autoscaler(service))
    return docs


def render() -> str:
    header = "# Generated by deploy/k8s/manifests.py: edit the generator, then run it.\n"
    return header + yaml.safe_dump_all(resources(), sort_keys=False, explicit_start=True)


def main() -> None:
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
