"""A Python grpcio client of the tokenator's Unix socket, as a Python agent would write it.

Generates the stubs from proto/ with grpcio-tools into a temporary directory, opens the
channel with default options (gRPC's C core then sends the percent-encoded socket path as
:authority) and prints one JSON line per result:

    {"call": "GetToken", "token": ..., "expires_at": ...}
    {"call": "WatchToken", "token": ...}          (twice: the current token, then a rotation)
    {"call": "GetAppInfo", "bot_login": ...}
    {"call": "Health", "status": "SERVING"}
    {"call": "Reflection", "services": [...]}

With `--tcp HOST:PORT` instead of a socket path it calls GetToken on a plaintext TCP listener
twice, without credentials, and prints the status codes: once with the channel's own authority
and once with a socket path as authority, which h2 refuses there:

    {"call": "GetToken", "authority": "default", "code": "UNAUTHENTICATED"}
    {"call": "GetToken", "authority": "path", "code": "INTERNAL"}

Usage: python tokenator_client.py PROTO_ROOT (SOCKET_PATH | --tcp HOST:PORT)
Any failed call on the socket raises, so the exit code is non-zero.
"""

import json
import sys
import tempfile

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_tools import protoc
import grpc_tools


def generate_stubs(proto_root: str, out: str) -> None:
    """Runs protoc (bundled with grpcio-tools) on the tokenator's contract."""
    include = grpc_tools.__path__[0] + "/_proto"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "penguin/tokenator/v1/tokenator.proto",
        ]
    )
    if code != 0:
        raise SystemExit(f"protoc failed with {code}")


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def tcp_codes(address: str, tokenator_pb2, tokenator_pb2_grpc) -> None:
    """GetToken without credentials over TCP, with the default and a path authority."""
    for name, options in [
        ("default", []),
        ("path", [("grpc.default_authority", "%2Frun%2Fpenguin%2Ftokenator.sock")]),
    ]:
        with grpc.insecure_channel(address, options=options) as channel:
            stub = tokenator_pb2_grpc.TokenServiceStub(channel)
            try:
                stub.GetToken(tokenator_pb2.GetTokenRequest(), timeout=30)
                code = "OK"
            except grpc.RpcError as error:
                code = error.code().name
            emit(call="GetToken", authority=name, code=code)


def main() -> None:
    proto_root = sys.argv[1]
    out = tempfile.mkdtemp(prefix="tokenator-stubs-")
    generate_stubs(proto_root, out)
    sys.path.insert(0, out)
    from penguin.tokenator.v1 import tokenator_pb2, tokenator_pb2_grpc

    if sys.argv[2] == "--tcp":
        tcp_codes(sys.argv[3], tokenator_pb2, tokenator_pb2_grpc)
        return
    socket_path = sys.argv[2]

    # Default channel options: no grpc.default_authority override.
    with grpc.insecure_channel(f"unix:{socket_path}") as channel:
        tokens = tokenator_pb2_grpc.TokenServiceStub(channel)

        reply = tokens.GetToken(tokenator_pb2.GetTokenRequest(), timeout=30)
        emit(call="GetToken", token=reply.token, expires_at=reply.expires_at.seconds)

        stream = tokens.WatchToken(tokenator_pb2.WatchTokenRequest(), timeout=60)
        for i, message in enumerate(stream):
            emit(call="WatchToken", token=message.token)
            if i == 1:
                stream.cancel()
                break

        info = tokens.GetAppInfo(tokenator_pb2.GetAppInfoRequest(), timeout=30)
        emit(call="GetAppInfo", bot_login=info.bot_login)

        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
        emit(call="Health", status=health_pb2.HealthCheckResponse.ServingStatus.Name(status.status))

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=30
        )
        services = [s.name for a in answers for s in a.list_services_response.service]
        emit(call="Reflection", services=sorted(services))


if __name__ == "__main__":
    main()
