"""Sends COUNT data messages from one MESH mailbox to another with NHS Digital's own mesh_client:
a partner writing to the gateway's mailbox, for the gateway's inbox tests.

usage: send_messages.py URL MAILBOX PASSWORD SHARED_KEY CLIENT_CERT CLIENT_KEY CA TO COUNT
"""
import sys

from mesh_client import MeshClient

url, mailbox, password, shared_key, cert, key, ca, to, count = sys.argv[1:10]
with MeshClient(url, mailbox, password, shared_key=shared_key.encode(), cert=(cert, key), verify=ca, max_retries=0) as client:
    client.handshake()
    for i in range(int(count)):
        client.send_message(to, f"partner message {i}".encode(), workflow_id="TEST_WORKFLOW", local_id=f"partner-{i}")
