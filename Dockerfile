# meterflow: one image, every role (`docker run meterflow <role>`). Runs the TypeScript sources with tsx,
# like a checkout does, so there is no build step to drift from what the tests ran.
FROM node:20-bookworm-slim

WORKDIR /app

# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY . .
RUN install -m 0755 deploy/docker-entrypoint.sh /usr/local/bin/meterflow-entrypoint \
    && install -d -o node -g node /data/sim

# In a container the API must listen beyond loopback; the published port decides who reaches it.
ENV API_HOST=0.0.0.0 \
    API_PORT=8080

USER node
EXPOSE 8080
ENTRYPOINT ["meterflow-entrypoint", "node", "/app/bin/meterflow.js"]
CMD ["all"]
