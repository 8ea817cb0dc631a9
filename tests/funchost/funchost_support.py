"""Constants shared by the dev host tests."""

from typing import Any

FAST_HOST_JSON: dict[str, Any] = {
    "version": "2.0",
    "functionTimeout": "00:05:00",
    "extensions": {
        "queues": {
            "maxPollingInterval": "00:00:00.500",
            "visibilityTimeout": "00:00:01",
            "batchSize": 4,
            "maxDequeueCount": 2,
            "messageEncoding": "base64",
        }
    },
}
