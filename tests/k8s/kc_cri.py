#!/usr/bin/env python3
"""kc_cri.py - a tiny Kubernetes CRI (runtime.v1) client for the kc harness.

It speaks gRPC to a CRI runtime (containerd's CRI plugin) the way the kubelet
does for pod sandboxes: Version, RunPodSandbox, PodSandboxStatus,
StopPodSandbox, RemovePodSandbox, ListPodSandbox, UpdateRuntimeConfig, plus
ImageService.ListImages.

Needs grpcio, grpcio-tools and protobuf (pip). The Python stubs are generated
from kc_cri.proto (next to this file) into KC_CRI_GEN (default: a temp dir)
on every start, so no generated code is kept in the tree.

usage: kc_cri.py -a SOCKET version
       kc_cri.py -a SOCKET runp POD.json        -> prints the sandbox id
       kc_cri.py -a SOCKET inspectp ID          -> JSON {id,state,ip,additional_ips,netns,pid,info}
       kc_cri.py -a SOCKET stopp ID
       kc_cri.py -a SOCKET rmp ID
       kc_cri.py -a SOCKET pods                 -> one "id state ns/name" line per sandbox
       kc_cri.py -a SOCKET images               -> one "id tag,tag" line per image
       kc_cri.py -a SOCKET update-runtime-config POD_CIDR[,POD_CIDR6]
                                                (as the kubelet does once the node has its pod CIDRs)
       kc_cri.py -a SOCKET status               -> JSON {conditions: {TYPE: bool}, networks: [names of
                                                the CNI networks the runtime has loaded]}

POD.json uses the CRI field names (snake_case), e.g.
  {"metadata": {"name": "p", "namespace": "default", "uid": "u1", "attempt": 0},
   "hostname": "p", "log_directory": "/tmp/x",
   "dns_config": {"servers": ["10.96.0.10"], "searches": ["svc.cluster.local"], "options": ["ndots:5"]},
   "port_mappings": [{"protocol": "TCP", "container_port": 80, "host_port": 30080}],
   "labels": {...}, "annotations": {...},
   "linux": {"security_context": {"namespace_options": {"network": "POD", "pid": "CONTAINER", "ipc": "POD"}}}}
"""
import argparse
import importlib
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = "kc_cri.proto"


def load_stubs():
    # One directory per process: concurrent clients must not read each other's half-written stubs.
    base = os.environ.get("KC_CRI_GEN")
    if base:
        os.makedirs(base, exist_ok=True)
    gen = tempfile.mkdtemp(prefix="kc-cri-gen.", dir=base)
    from grpc_tools import protoc
    rc = protoc.main(["protoc", "-I" + HERE, "--python_out=" + gen, "--grpc_python_out=" + gen,
                      os.path.join(HERE, PROTO)])
    if rc != 0:
        sys.exit("protoc failed for " + PROTO)
    sys.path.insert(0, gen)
    pb = importlib.import_module("kc_cri_pb2")
    grpc_pb = importlib.import_module("kc_cri_pb2_grpc")
    return pb, grpc_pb


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-a", "--address", required=True, help="path of the CRI unix socket")
    ap.add_argument("-t", "--timeout", type=float, default=120.0)
    ap.add_argument("cmd")
    ap.add_argument("arg", nargs="?")
    a = ap.parse_args()

    import grpc
    from google.protobuf import json_format
    pb, grpc_pb = load_stubs()
    ch = grpc.insecure_channel("unix://" + a.address)
    rt = grpc_pb.RuntimeServiceStub(ch)
    im = grpc_pb.ImageServiceStub(ch)
    to = a.timeout
    try:
        if a.cmd == "version":
            r = rt.Version(pb.VersionRequest(version="v1"), timeout=to)
            print(json.dumps({"version": r.version, "runtime_name": r.runtime_name,
                              "runtime_version": r.runtime_version,
                              "runtime_api_version": r.runtime_api_version}))
        elif a.cmd == "runp":
            cfg = pb.PodSandboxConfig()
            json_format.ParseDict(json.load(open(a.arg)), cfg, ignore_unknown_fields=False)
            r = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=to)
            print(r.pod_sandbox_id)
        elif a.cmd == "inspectp":
            r = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=a.arg, verbose=True), timeout=to)
            st = r.status
            out = {"id": st.id, "state": pb.PodSandboxState.Name(st.state),
                   "name": st.metadata.name, "namespace": st.metadata.namespace,
                   "ip": st.network.ip, "additional_ips": [x.ip for x in st.network.additional_ips],
                   "netns": "", "pid": 0, "info": {}}
            raw = r.info.get("info")
            if raw:
                info = json.loads(raw)
                out["info"] = info
                out["pid"] = info.get("pid", 0)
                for n in (info.get("runtimeSpec", {}).get("linux", {}).get("namespaces") or []):
                    if n.get("type") == "network":
                        out["netns"] = n.get("path", "")
            print(json.dumps(out))
        elif a.cmd == "stopp":
            rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=a.arg), timeout=to)
        elif a.cmd == "rmp":
            rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=a.arg), timeout=to)
        elif a.cmd == "pods":
            r = rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=to)
            for p in r.items:
                print(p.id, pb.PodSandboxState.Name(p.state), p.metadata.namespace + "/" + p.metadata.name)
        elif a.cmd == "images":
            r = im.ListImages(pb.ListImagesRequest(), timeout=to)
            for i in r.images:
                print(i.id, ",".join(i.repo_tags))
        elif a.cmd == "status":
            r = rt.Status(pb.StatusRequest(verbose=True), timeout=to)
            nets = []
            raw = r.info.get("cniconfig")
            if raw:
                nets = [(n.get("Config") or {}).get("Name", "") for n in json.loads(raw).get("Networks") or []]
            print(json.dumps({"conditions": {c.type: c.status for c in r.status.conditions},
                              "networks": nets}))
        elif a.cmd == "update-runtime-config":
            net = pb.NetworkConfig(pod_cidr=a.arg)
            rt.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(
                runtime_config=pb.RuntimeConfig(network_config=net)), timeout=to)
        else:
            sys.exit("unknown command " + a.cmd)
    except grpc.RpcError as e:
        print("rpc error: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
