"""The FastAPI app factory; its lifespan owns the platform (and, in `serve`, the workers)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from openpitrix import heap
from openpitrix.api.docs import install_docs
from openpitrix.api.errors import install_error_handlers
from openpitrix.api.health import router as health_router
from openpitrix.api.limits import BodyLimitMiddleware
from openpitrix.api.middleware import RequestIdMiddleware
from openpitrix.api.params import reject_unknown_query
from openpitrix.api.responses import document_platform_responses
from openpitrix.api.routing import warm_routes
from openpitrix.api.textguard import install_text_guard
from openpitrix.apps.router import router as apps_router
from openpitrix.bus.topology import EVENT_PREFIX
from openpitrix.clusters.creates import deploys as cluster_deploys
from openpitrix.clusters.router import router as clusters_router
from openpitrix.composition import build_registry
from openpitrix.events.broadcast import Broadcaster
from openpitrix.events.sse import StreamCounter
from openpitrix.feed.router import router as events_router
from openpitrix.iam.authcache import AuthCache
from openpitrix.iam.bootstrap import DEFAULT_ADMIN_EMAIL, ensure_bootstrap_admin
from openpitrix.iam.ratelimit import LoginLimiter
from openpitrix.iam.router import router as iam_router
from openpitrix.iam.tokens import AccessTokens, load_signing_key
from openpitrix.jobs.router import router as jobs_router
from openpitrix.jobs.stream import job_rows
from openpitrix.platform import Platform, executor_name
from openpitrix.repos.router import router as repos_router
from openpitrix.runtimes.router import router as runtimes_router
from openpitrix.settings import Settings
from openpitrix.workers.runner import WorkerGroup
from openpitrix.workers.service import WorkerContext

log = logging.getLogger(__name__)

DESCRIPTION = """
OpenPitrix manages applications across clouds: repositories of Helm charts and VM apps are
indexed into a catalog, and app versions are deployed onto runtimes as clusters. Every long
operation is a job whose progress streams as server-sent events.
"""


def create_app(
    settings: Settings | None = None,
    *,
    managers: list[str] | None = None,
    run_workers: bool = False,
) -> FastAPI:
    """Build the gateway. With `run_workers`, the named managers (all when None) run in-process."""
    settings = settings or Settings()
    registry = build_registry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        platform = Platform(settings, role="serve" if run_workers else "api")
        await platform.start(relay=settings.relay_enabled)
        app.state.platform = platform
        try:
            app.state.access_tokens = AccessTokens(
                load_signing_key(settings), settings.auth.access_token_ttl_seconds
            )
            app.state.login_limiter = await LoginLimiter.open(platform.js, settings)
            auth_cache = AuthCache(platform.db, settings.auth.check_cache_seconds)
            await auth_cache.start(platform.nc)
            app.state.auth_cache = auth_cache
            # The one subscription to the events stream that every SSE client of this
            # process is fed from.
            broadcaster = Broadcaster(
                platform.js,
                stream=settings.bus.events_stream,
                subject=f"{EVENT_PREFIX}.>",
                buffer_limit=settings.http.sse_client_buffer,
                keepalive_seconds=settings.sse_keepalive_seconds,
            )
            await broadcaster.start()
            app.state.broadcaster = broadcaster
            # The process's deploys, written together when they arrive together.
            app.state.cluster_deploys = cluster_deploys(platform.db)
            # The jobs whose streams open together are read together.
            app.state.job_rows = job_rows(platform.stream_db)
            generated = await ensure_bootstrap_admin(platform.db, settings)
        except BaseException:
            await platform.stop()  # e.g. an unmigrated database: do not leak NATS and the pool
            raise
        if generated is not None:
            # The only time this password exists in clear: shown once, never stored.
            log.warning(
                "created the first admin email=%s password=%s (change it after logging in)",
                settings.bootstrap_admin_email or DEFAULT_ADMIN_EMAIL,
                generated,
            )
        group: WorkerGroup | None = None
        if run_workers:
            ctx = WorkerContext(
                settings=settings,
                db=platform.db,
                js=platform.js,
                http=platform.http,
                executor=executor_name(),
            )
            # Here and not at the top: a gateway alone never loads the workers' engine.
            from openpitrix.managers import build_managers

            group = WorkerGroup(ctx, build_managers(managers, registry))
            group.start()
        heap.settle(settings.gc)
        warm_routes(app)
        try:
            yield
        finally:
            if group is not None:
                await group.stop()
            # Previews lease provider clients in the gateway too: close them with the process.
            await registry.providers.close()
            await app.state.cluster_deploys.close()
            await auth_cache.stop()
            await broadcaster.stop()
            await platform.stop()

    app = FastAPI(
        title="OpenPitrix",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query)],
        # Served by install_docs from local assets: FastAPI's own pages load them from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)
    app.state.settings = settings
    # The routes that cancel or retry jobs, delete a runtime's clusters or call a provider ask
    # these.
    app.state.job_adapters = registry.job_adapters
    app.state.cluster_hooks = registry.cluster_hooks
    app.state.providers = registry.providers
    # Cluster deploys and actions in their write transactions at once (clusters.router).
    app.state.cluster_writes = asyncio.Semaphore(settings.http.cluster_write_concurrency)
    app.state.sse_streams = StreamCounter(
        per_caller=settings.http.sse_streams_per_caller,
        per_process=settings.http.sse_streams_per_process,
    )
    # Added first, so inside the body limit: it only ever holds a body within the limit.
    install_text_guard(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.http.max_body_bytes,
        max_upload_bytes=settings.http.max_upload_bytes,
    )
    app.add_middleware(RequestIdMiddleware)
    if settings.cors_origins:
        # Bearer tokens, not cookies: credentials stay off, so a listed origin still cannot
        # ride on a browser's ambient session.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "Idempotency-Key"],
            expose_headers=["Location", "Retry-After", "X-Request-ID"],
            max_age=600,
        )
    install_error_handlers(app, database_retry_after=settings.http.database_retry_after_seconds)
    # Routers are asked in order; each declines a path outside its own at once (api.routing),
    # and the one that has it tries its routes' patterns one by one. The probes and the hot
    # reads (the catalog, jobs and their event streams) come first. No two routers share a
    # path, so the order changes nothing else.
    for router in (
        health_router,
        apps_router,
        jobs_router,
        events_router,
        iam_router,
        repos_router,
        runtimes_router,
        clusters_router,
    ):
        app.include_router(router)
    document_platform_responses(app)
    return app
