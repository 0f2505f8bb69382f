# pyqrscp in a container, running the example config (ACME_STORE and COMMON on port 10001):
#   docker build -t pyqrscp . && docker run -p 10001:10001 -v pyqrscp-data:/srv/pyqrscp/storage pyqrscp
# Use your own config: -v /path/to/dcmqrscp.cfg:/srv/pyqrscp/dcmqrscp.cfg (storage areas
# relative to it land under /srv/pyqrscp).
FROM python:3.12-slim
COPY . /tmp/pyqrscp-src
RUN pip install --no-cache-dir /tmp/pyqrscp-src && rm -rf /tmp/pyqrscp-src \
    && useradd --system --home-dir /srv/pyqrscp --create-home pyqrscp
WORKDIR /srv/pyqrscp
RUN pyqrscp --print-example-config > dcmqrscp.cfg && mkdir -p storage && chown -R pyqrscp: .
USER pyqrscp
VOLUME /srv/pyqrscp/storage
EXPOSE 10001
STOPSIGNAL SIGTERM
CMD ["pyqrscp", "-v", "-c", "/srv/pyqrscp/dcmqrscp.cfg"]
