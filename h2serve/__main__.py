from h2serve.cli import main

raise SystemExit(main())
