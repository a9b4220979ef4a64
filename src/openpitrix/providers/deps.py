"""The API's access to the installed providers, which the composition root put on the app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from openpitrix.providers.registry import Providers


async def providers_of(request: Request) -> Providers:
    providers: Providers = request.app.state.providers
    return providers


ProvidersDep = Annotated[Providers, Depends(providers_of)]
