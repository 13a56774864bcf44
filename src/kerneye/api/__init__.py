"""The agent's gRPC API (api/v1/kerneye/*.proto): server, client, and the
export-JSON <-> protobuf conversions."""
