"""The whole system on one machine: Azurite, the ACA emulator, the functions dev host, a demo hub."""
