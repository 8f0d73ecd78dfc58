"""Framework adapters. Import a subpackage, such as ``ckptcore.adapters.keras``, to use one."""

__all__: list[str] = []
