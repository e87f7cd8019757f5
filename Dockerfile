FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 LADDER_KERNEL_CACHE=/opt/ladder/kernels
WORKDIR /app
COPY requirements.txt requirements-nodeps.txt ./
RUN pip install -r requirements.txt && pip install --no-deps -r requirements-nodeps.txt
COPY . .
# The C kernels (evalcore.native: bootstrap sampler 3; the CPU GEMV) are built here with a
# compiler that the image then drops; a built kernel loads without one (same results either way).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && export CC=gcc \
    && python -c "from evalcore.ratings.counter_sampler import kernel; assert kernel()" \
    && python -c "from models_zoo.kernels import cpu_gemv; cpu_gemv.is_available()" \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
RUN DJANGO_SETTINGS_MODULE=config.settings python manage.py collectstatic --no-input -v 0
EXPOSE 8000
