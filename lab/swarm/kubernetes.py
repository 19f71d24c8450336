"""The same lab as a Kubernetes Job (`invoke serve --print-k8s-job EXERCISE`): the pod spec that runs
the tcplab image's `tcplab up` with the two capabilities namespaces need. Printed, not applied: no
Kubernetes server could be run where tcplab is built, so this is written from Kubernetes' API
reference and untested (the README says so).

No pod sysctl is asked for: every lab sets its TCP sysctls inside network namespaces it makes itself
in the pod, where they need no permission of Kubernetes'. (Were they set on the pod, the keepalive
ones would be allowed: Kubernetes 1.29 counts net.ipv4.tcp_keepalive_time, _intvl and _probes as safe,
being per network namespace since Linux 4.5; others, such as net.ipv4.tcp_retries2 or tcp_syn_retries,
are "unsafe" and need `--allowed-unsafe-sysctls` on each node's kubelet.)
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import yaml

from ..spec import exercise as exercise_mod
from . import jobs


def job(exercise: str, sets: Sequence[str], image: str, lab: str = "tcplab") -> str:
    """The Job's YAML, for `kubectl create -f -`; the exercise and values are checked first."""
    exercise_mod.load(exercise, sets, lab)
    args = ["up", exercise, "--lab", lab, *[a for s in sets for a in ("--set", s)]]
    name = re.sub(r"[^a-z0-9-]", "-", f"tcplab-{exercise}".lower())[:50]
    spec: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"generateName": f"{name}-", "labels": {jobs.LAB_LABEL: lab}},
        "spec": {
            "backoffLimit": 0,  # a lab that cannot start is reported, not retried
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": {jobs.LAB_LABEL: lab}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "lab",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": [*args, "--results", "results/lab"],
                        "env": [
                            # The results folder comes back in the pod's log: `kubectl logs job/NAME | invoke receive DIR`.
                            {"name": "TCPLAB_SHIP_RESULTS", "value": "results/lab"},
                            {"name": "TCPLAB_K8S_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                        ],
                        "securityContext": {"capabilities": {"add": ["NET_ADMIN", "SYS_ADMIN"]}},
                        "resources": {"requests": {"cpu": f"{int(jobs.CPU_RESERVATION * 1000)}m",
                                                   "memory": f"{jobs.MEMORY_RESERVATION // (1024 * 1024)}Mi"}},
                    }],
                },
            },
        },
    }
    head = ("# tcplab lab as a Kubernetes Job (untested: no Kubernetes server where tcplab is built).\n"
            f"# The image is the one built on this machine: push it to your registry (and name that), or load it on every node.\n"
            "# On nodes with AppArmor, add securityContext.appArmorProfile: {type: Unconfined} (network namespaces mount).\n"
            f"# kubectl create -f job.yml; then kubectl logs job/<name> | invoke receive results/{lab}\n")
    return head + yaml.safe_dump(spec, sort_keys=False)
