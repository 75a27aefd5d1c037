"""What airfix's Airflow DAGs (``dags/``) call, installed as ``airfix.airflow_glue`` so that every
Airflow worker and the triggerer import it from the package, never from the DAGs folder.

``runs`` needs no Airflow (plain functions over the store, tested without a scheduler);
``trigger`` and ``sensor`` need ``apache-airflow`` (the ``airflow`` extra).
"""
