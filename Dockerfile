FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY requirements.txt requirements-nodeps.txt ./
RUN pip install -r requirements.txt && pip install --no-deps -r requirements-nodeps.txt
COPY . .
RUN DJANGO_SETTINGS_MODULE=config.settings python manage.py collectstatic --no-input -v 0
EXPOSE 8000
