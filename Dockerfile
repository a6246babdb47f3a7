# dmfr on a CUDA host: the PyTorch image's CUDA torch is kept (scripts/setup.sh gives the venv the
# system site-packages when torch is already importable), Node 20 runs the control plane, tini is
# PID 1 so signals reach the controller and zombie ranks are reaped.
ARG TORCH_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
FROM node:20-bookworm-slim AS node

FROM ${TORCH_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini build-essential python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s /usr/local/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s /usr/local/lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx

WORKDIR /opt/dmfr
# Dependencies first, so code changes do not reinstall them.
COPY package.json package-lock.json requirements.txt ./
COPY scripts/setup.sh scripts/setup.sh
RUN mkdir -p python && bash scripts/setup.sh
COPY . .
RUN bash scripts/setup.sh && ln -s /opt/dmfr/bin/dmfr.js /usr/local/bin/dmfr

ENV DMFR_DATA_DIR=/data
VOLUME ["/data"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/opt/dmfr/bin/dmfr.js"]
CMD ["run", "--preset", "quick", "--out", "/data/runs/quick"]
