import sys

from soap_service.cli import main

sys.exit(main())
