"""AWS Lambda's published limits and prices (docs.aws.amazon.com/lambda), in one place."""

MEMORY_MB_MIN = 128
MEMORY_MB_MAX = 10_240
MB_PER_VCPU = 1_769  # 1,769 MB buys one full vCPU
VCPU_MAX = 6  # at 10,240 MB
ZIP_UNZIPPED_MB = 250  # function code plus all layers
ZIP_DIRECT_UPLOAD_MB = 50  # zipped, uploaded without S3
CONTAINER_IMAGE_MB = 10_240
EPHEMERAL_MB_MIN, EPHEMERAL_MB_MAX = 512, 10_240
TIMEOUT_S_MAX = 900
INIT_S_MAX = 10
SYNC_PAYLOAD_MB = 6
PRICE_PER_GB_S = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
PRICE_PER_REQUEST = 0.20 / 1_000_000
# The AWS Lambda Python base image (public.ecr.aws/lambda/python:3.11) unpacks to roughly this much.
CONTAINER_BASE_IMAGE_MB = 600
