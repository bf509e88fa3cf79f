import sys

from crres_sdk.serve.command import main

sys.exit(main())
