"""The ARM gateway's edges that the emulator does not reach."""

from __future__ import annotations

from azure.core.exceptions import HttpResponseError

from functions.arm import ArmApps, for_users


class RefusingClient:
    """An ARM client that may not read operations (a 403 from ARM)."""

    def send_request(self, request):
        raise HttpResponseError(message="AuthorizationFailed: no read on containerappOperationStatuses")


def test_an_unreadable_operation_gives_no_error_instead_of_failing_the_follow_up():
    apps = ArmApps(RefusingClient(), "rg")
    assert apps.operation_error("https://management.azure.com/subscriptions/x/operations/1") is None
    assert apps.operation_error("") is None


def test_messages_for_users_keep_the_meaning_and_drop_ids():
    message = ("The subscription '3f2b6a1c-0d4e-4b7a-9c1e-2a5d8f0b7e61' has no quota left in "
               "/subscriptions/3f2b6a1c-0d4e-4b7a-9c1e-2a5d8f0b7e61/resourceGroups/rg/providers/Microsoft.App/x.")
    shown = for_users(message)
    assert "3f2b6a1c" not in shown and "/subscriptions/" not in shown
    assert shown.startswith("The subscription '<id>' has no quota left in <Azure resource>")
