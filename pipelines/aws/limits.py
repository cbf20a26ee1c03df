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
# The OS under each managed Python runtime and its AWS base image, with that OS's glibc: wheels tagged
# for a newer glibc (manylinux_2_28 ...) fail to import there. 3.10-3.11 run on Amazon Linux 2, 3.12+ on 2023.
AL2_GLIBC, AL2023_GLIBC = (2, 26), (2, 34)
RUNTIME_OS = {
    "3.10": ("Amazon Linux 2", AL2_GLIBC),
    "3.11": ("Amazon Linux 2", AL2_GLIBC),
    "3.12": ("Amazon Linux 2023", AL2023_GLIBC),
    "3.13": ("Amazon Linux 2023", AL2023_GLIBC),
}
PYTHON_BASE_IMAGE = "public.ecr.aws/lambda/python:{python}"
OS_ONLY_BASE_IMAGE = "public.ecr.aws/lambda/provided:al2023"  # Amazon Linux 2023, glibc 2.34
OS_ONLY_GLIBC = AL2023_GLIBC
BILLED_MS_GRANULARITY = 1  # duration is billed rounded up to the millisecond
