"""A job whose run worker stays busy long enough to be killed (run monitoring test)."""
import time

from dagster import job, op


@op
def wait_a_while():
    time.sleep(300)


@job
def slow_job():
    wait_a_while()
