# Gatehouse production image: Daphne (python -m gateway.serve) serves HTTP; the same image
# runs Celery and migrations.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    DJANGO_SETTINGS_MODULE=config.settings

RUN groupadd --system --gid 10001 gatehouse \
    && useradd --system --uid 10001 --gid gatehouse --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin gatehouse

WORKDIR /app

COPY requirements/base.lock requirements/base.lock
RUN pip install --require-hashes --no-deps -r requirements/base.lock

COPY . .

# Static files are collected into the image (served by WhiteNoise). The keys below exist
# only for this one command; they are not kept in the image's environment.
RUN SECRET_KEY=build-only-not-a-secret-collectstatic \
    GATEHOUSE_ENCRYPTION_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    python manage.py collectstatic --noinput \
    && chmod 0755 docker/entrypoint.sh \
    && mkdir -p var/beat var/spool \
    && chown -R gatehouse:gatehouse var

USER gatehouse

EXPOSE 8000

ENTRYPOINT ["/app/docker/entrypoint.sh"]
# gateway.serve is Daphne with backpressure and a graceful shutdown on SIGTERM (drains for
# GATEHOUSE_SHUTDOWN_GRACE_S seconds); give `docker stop -t` / stop_grace_period more than that.
CMD ["python", "-m", "gateway.serve", "-b", "0.0.0.0", "-p", "8000"]
