# The gateway as a container: the same `coco-gateway dev` the README starts, listening on
# all interfaces inside the container, with the chain in the /data volume.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install --no-cache-dir .
VOLUME ["/data"]
EXPOSE 8545
ENTRYPOINT ["coco-gateway"]
CMD ["dev", "--host", "0.0.0.0", "--port", "8545", "--data-dir", "/data"]
