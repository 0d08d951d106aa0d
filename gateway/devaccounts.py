"""The dev node's funded accounts: derived from the mnemonic Anvil and Hardhat use."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account

DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_BALANCE_WEI = 10_000 * 10**18

Account.enable_unaudited_hdwallet_features()


@dataclass(frozen=True)
class DevAccount:
    address: str  # checksummed
    private_key: bytes


def derive(mnemonic: str = DEV_MNEMONIC, count: int = 10) -> list[DevAccount]:
    out = []
    for i in range(count):
        acct = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}")
        out.append(DevAccount(acct.address, bytes(acct.key)))
    return out
