"""Reads (and acknowledges) every message in a MESH mailbox with NHS Digital's own mesh_client,
printing them as JSON: an independent peer for the gateway's MESH transport tests.

usage: read_inbox.py URL MAILBOX PASSWORD SHARED_KEY CLIENT_CERT CLIENT_KEY CA
"""
import base64
import json
import sys

from mesh_client import MeshClient

url, mailbox, password, shared_key, cert, key, ca = sys.argv[1:8]
out = []
with MeshClient(url, mailbox, password, shared_key=shared_key.encode(), cert=(cert, key), verify=ca, max_retries=0) as client:
    client.handshake()
    for message_id in client.list_messages():
        msg = client.retrieve_message(message_id)
        body = msg.read()
        out.append({
            "id": message_id,
            "headers": {k.lower(): v for k, v in msg.mex_headers()},
            "body": base64.b64encode(body).decode(),
        })
        msg.acknowledge()
print(json.dumps(out))
